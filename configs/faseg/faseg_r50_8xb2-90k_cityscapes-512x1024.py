# FASeg R50 on Cityscapes, 512 x 1024 crops, 90k iterations, batch 16; whole-image
# test at 1024 x 2048. The official Cityscapes config trains R50 with SyncBN (the ADE
# one freezes BN), hence requires_grad=True here. Official README: 80.5 mIoU (s.s.).
_base_ = [
    '../_base_/models/faseg_r50.py',
    'mmseg::_base_/datasets/cityscapes.py',
    './_base_/faseg_adamw-poly_90k.py',
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
        # conditional encodings inside the deformable encoder, as the official code
        key_pos_placement='encoder',
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
