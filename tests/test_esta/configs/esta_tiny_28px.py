# Tiny ESTA run for the tests: two random 4-layer anchors (16-d and 32-d, patch 14) on
# 28 px Fashion-MNIST (40 training images), PST + sampling + distillation, 6 iterations,
# a checkpoint every 3.
_base_ = [
    '../../../configs/_base_/datasets/vtab1k_fashion_mnist.py',
    '../../../configs/_base_/default_runtime_cls.py',
]
img_size = 28
pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(img_size, img_size), interpolation='bicubic',
         backend='pillow'),
    dict(type='PackInputs'),
]
train_dataloader = dict(batch_size=4, num_workers=0, drop_last=True,
                        dataset=dict(pipeline=pipeline, indices=40))
val_dataloader = dict(batch_size=8, num_workers=0, dataset=dict(pipeline=pipeline, indices=24))
test_dataloader = val_dataloader


def _anchor(dim, heads):
    return dict(arch=dict(embed_dims=dim, num_layers=4, num_heads=heads,
                          feedforward_channels=2 * dim),
                img_size=img_size, patch_size=14, drop_rate=0.1,
                lora_cfg=dict(rank=2, alpha=2))


model = dict(
    type='StitchedImageClassifier',
    backbone=dict(type='StitchedViT', anchors=[_anchor(16, 2), _anchor(32, 4)],
                  out_type='cls_token'),
    neck=None,
    head=dict(type='LinearClsHead', num_classes=10, in_channels=32,
              loss=dict(type='CrossEntropyLoss', loss_weight=1.0)))
optim_wrapper = dict(optimizer=dict(type='AdamW', lr=1e-2, weight_decay=0.0))
param_scheduler = []
train_cfg = dict(type='IterBasedTrainLoop', max_iters=6, val_interval=100)
val_cfg = dict()
test_cfg = dict()
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=1),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=3, max_keep_ckpts=-1))
custom_hooks = [
    dict(type='RNGStateHook'),
    dict(type='StitchInitHook', num_images=8),
    dict(type='ESTASamplingHook', warmup_ratio=0.5, num_intervals=4),
]
randomness = dict(seed=0)
