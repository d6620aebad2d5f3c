# FASeg R50 on Cityscapes, 512 x 1024 crops, 90k iterations, batch 16; whole-image
# test at 1024 x 2048. The official Cityscapes config trains R50 with SyncBN (the ADE
# one freezes BN), hence requires_grad=True here. Official README: 80.5 mIoU (s.s.).
_base_ = [
    '../_base_/models/faseg_r50.py',
    'mmseg::_base_/datasets/cityscapes.py',
    '../_base_/default_runtime_seg.py',
    '../_base_/schedules/seg_iter-80k.py',
]
# FASegHead is registered by projects.faseg (also imported by `projects` once listed there)
custom_imports = dict(imports=['projects', 'projects.faseg'], allow_failed_imports=False)
crop_size = (512, 1024)
num_classes = 19
data_preprocessor = dict(size=crop_size)
model = dict(
    data_preprocessor=data_preprocessor,
    backbone=dict(norm_cfg=dict(type='SyncBN', requires_grad=True)),
    decode_head=dict(
        num_classes=num_classes,
        loss_cls=dict(class_weight=[1.0] * num_classes + [0.1])))
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(
        type='RandomChoiceResize',
        scales=[int(1024 * x * 0.1) for x in range(5, 21)],
        resize_type='ResizeShortestEdge',
        max_size=4096),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs')
]
train_dataloader = dict(batch_size=2, dataset=dict(pipeline=train_pipeline))

embed_multi = dict(lr_mult=1.0, decay_mult=0.0)
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=0.0001, weight_decay=0.05, eps=1e-8,
                   betas=(0.9, 0.999)),
    clip_grad=dict(max_norm=0.01, norm_type=2),
    paramwise_cfg=dict(
        custom_keys={
            'backbone': dict(lr_mult=0.1, decay_mult=1.0),
            'query_embed': embed_multi,
            'query_feat': embed_multi,
            'level_embed': embed_multi,
        },
        norm_decay_mult=0.0))
param_scheduler = [
    dict(type='PolyLR', eta_min=0, power=0.9, begin=0, end=90000, by_epoch=False)
]
train_cfg = dict(max_iters=90000, val_interval=5000)
default_hooks = dict(
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=5000,
                    save_best='mIoU'))
auto_scale_lr = dict(enable=False, base_batch_size=16)
