# Tiny epoch-based classification run for tool tests: a 2-layer, 32-dim PYRAViT with
# dropout and drop-path (so resuming depends on the RNG state), linear head, PYRA's
# VTAB-1k optimizer, 3 epochs, a checkpoint and a validation every epoch.
_base_ = [
    '../../../configs/_base_/datasets/vtab1k_fashion_mnist.py',
    '../../../configs/_base_/schedules/vtab1k_adamw-cosine_100e.py',
    '../../../configs/_base_/default_runtime_cls.py',
]
img_size = 56
pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(img_size, img_size), interpolation='bicubic',
         backend='pillow'),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    batch_size=4, num_workers=0, drop_last=False, dataset=dict(pipeline=pipeline))
val_dataloader = dict(batch_size=8, num_workers=0, dataset=dict(pipeline=pipeline))
test_dataloader = val_dataloader

model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='PYRAViT',
        arch=dict(embed_dims=32, num_layers=2, num_heads=2, feedforward_channels=64),
        img_size=img_size,
        patch_size=8,
        out_type='cls_token',
        drop_rate=0.1,
        drop_path_rate=0.2),
    neck=None,
    head=dict(
        type='LinearClsHead',
        num_classes=10,
        in_channels=32,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0)))

param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=True, begin=0, end=1,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=2, eta_min=1e-5, by_epoch=True, begin=1, end=3),
]
train_cfg = dict(by_epoch=True, max_epochs=3, val_interval=1)
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=1),
    checkpoint=dict(type='CheckpointHook', interval=1, max_keep_ckpts=-1))
randomness = dict(seed=0)
