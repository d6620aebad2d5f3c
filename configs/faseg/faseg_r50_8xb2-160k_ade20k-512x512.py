# FASeg R50 on ADE20K, 512 x 512 crops, 160k iterations, batch 16 (8 GPUs x 2), as the
# official code and mmseg's Mask2Former recipe: AdamW 1e-4, wd 0.05, backbone lr x0.1,
# embeddings without weight decay, full-model gradient clipping 0.01, poly decay.
# Thesis / official README: 48.3 mIoU (s.s.).
_base_ = [
    '../_base_/models/faseg_r50.py',
    'mmseg::_base_/datasets/ade20k.py',
    './_base_/faseg_adamw-poly_160k.py',
]
# FASegHead is registered by projects.faseg (also imported by `projects` once listed there)
custom_imports = dict(imports=['projects', 'projects.faseg'], allow_failed_imports=False)
crop_size = (512, 512)
num_classes = 150
data_preprocessor = dict(size=crop_size)
model = dict(
    data_preprocessor=data_preprocessor,
    decode_head=dict(
        # conditional encodings inside the deformable encoder, as the official code
        key_pos_placement='encoder',
        num_classes=num_classes,
        loss_cls=dict(class_weight=[1.0] * num_classes + [0.1])))
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(
        type='RandomChoiceResize',
        scales=[int(512 * x * 0.1) for x in range(5, 21)],
        resize_type='ResizeShortestEdge',
        max_size=2048),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs')
]
train_dataloader = dict(batch_size=2, dataset=dict(pipeline=train_pipeline))
