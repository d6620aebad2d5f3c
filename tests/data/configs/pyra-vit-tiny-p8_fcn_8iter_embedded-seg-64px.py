# Tiny iteration-based segmentation run for tool tests: a 2-layer, 32-dim PYRAViT
# (dropout, drop-path) with a one-conv FCN head (BN), 64 px crops, 8 iterations,
# checkpoint and validation every 4.
_base_ = [
    '../../../configs/_base_/datasets/embedded_seg.py',
    '../../../configs/_base_/schedules/schedule_8iter.py',
    '../../../configs/_base_/default_runtime_seg.py',
]
crop_size = (64, 64)
img_scale = (256, 64)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=False),
    dict(type='RandomResize', scale=img_scale, ratio_range=(0.5, 2.0), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='LoadAnnotations', reduce_zero_label=False),
    dict(type='PackSegInputs'),
]
train_dataloader = dict(
    batch_size=2, num_workers=0, persistent_workers=False,
    dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(
    num_workers=0, persistent_workers=False, dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader

norm_cfg = dict(type='BN', requires_grad=True)
model = dict(
    type='EncoderDecoder',
    data_preprocessor=dict(
        type='SegDataPreProcessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True,
        pad_val=0,
        seg_pad_val=255,
        size=crop_size),
    backbone=dict(
        type='PYRAViT',
        arch=dict(embed_dims=32, num_layers=2, num_heads=2, feedforward_channels=64),
        img_size=crop_size,
        patch_size=8,
        out_type='featmap',
        out_indices=(1, ),
        final_norm=False,
        drop_rate=0.1,
        drop_path_rate=0.2),
    decode_head=dict(
        type='FCNHead',
        in_channels=32,
        in_index=0,
        channels=16,
        num_convs=1,
        concat_input=False,
        dropout_ratio=0.1,
        num_classes=23,
        norm_cfg=norm_cfg,
        align_corners=False,
        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)),
    train_cfg=dict(),
    test_cfg=dict(mode='whole'))
default_hooks = dict(
    logger=dict(interval=1), checkpoint=dict(by_epoch=False, interval=4))
randomness = dict(seed=0)
