# FASeg on a PYRA ViT-B/16 (token merging with parallel yielding re-activation, LoRA on
# q/k/v, frozen backbone): the merged tokens are unmerged to the full 1/16 grid at four
# taps, mmseg's MultiLevelNeck turns them into 1/4 .. 1/32 maps for the pixel decoder
# and the FASeg decoder (DFPQ + HRCA on the 1/4 map). No published system combines the
# two; no reference number. Slide inference at the crop size keeps the token count the
# merge schedule was built for.
_base_ = [
    '../_base_/models/faseg_r50.py',
    'mmseg::_base_/datasets/ade20k.py',
    '../_base_/default_runtime_seg.py',
    '../_base_/schedules/seg_iter-160k.py',
]
# FASegHead is registered by projects.faseg (also imported by `projects` once listed there)
custom_imports = dict(imports=['projects', 'projects.faseg'], allow_failed_imports=False)
crop_size = (512, 512)
num_classes = 150
data_preprocessor = dict(size=crop_size)
model = dict(
    data_preprocessor=data_preprocessor,
    backbone=dict(
        _delete_=True,
        type='PYRAViT',
        arch='b',
        img_size=crop_size,
        patch_size=16,
        out_type='featmap',
        out_indices=(2, 5, 8, 11),
        final_norm=False,
        with_cls_token=True,
        drop_path_rate=0.1,
        interpolate_mode='bicubic',
        merge_mode='pyra',
        merge_schedule='low',
        lora_cfg=dict(rank=8, alpha=8, dropout=0.1),
        frozen=True,
        init_cfg=dict(type='Pretrained',
                      checkpoint='checkpoints/vit_base_patch16_224.augreg_in21k.pth')),
    neck=dict(type='MultiLevelNeck', in_channels=[768] * 4, out_channels=256,
              scales=[4, 2, 1, 0.5]),
    decode_head=dict(
        in_channels=[256] * 4,
        num_classes=num_classes,
        loss_cls=dict(class_weight=[1.0] * num_classes + [0.1])),
    test_cfg=dict(mode='slide', crop_size=crop_size, stride=(341, 341)))
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

# the frozen backbone only trains its LoRA / PYRA parameters (lr x0.1 as the other
# backbones); embeddings and norms without weight decay
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
    dict(type='PolyLR', eta_min=0, power=0.9, begin=0, end=160000, by_epoch=False)
]
train_cfg = dict(val_interval=5000)
default_hooks = dict(
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=5000,
                    save_best='mIoU'))
auto_scale_lr = dict(enable=False, base_batch_size=16)
