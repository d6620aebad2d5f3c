# FASeg that trains on CPU in minutes: a narrow ResNet-18 (16 base channels, from
# scratch), 64-channel pixel decoder with one deformable layer, 5 decoder layers
# (1/32, 1/16, 1/8, HRCA on the 1/4 map, 1/32), 16 queries, 512 sampled points, on
# the embedded segmentation set (23 classes, 128 x 128 crops). At 128 px the 1/32 grid
# has 16 pixels, so hrca_omega=4 keeps 4 of them (4 windows of 8 x 8 = 256 of the
# 1024 tokens at 1/4).
_base_ = [
    '../_base_/models/faseg_r50.py',
    '../_base_/datasets/embedded_seg.py',
    '../_base_/default_runtime_seg.py',
]
# FASegHead is registered by projects.faseg (also imported by `projects` once listed there)
custom_imports = dict(imports=['projects', 'projects.faseg'], allow_failed_imports=False)
crop_size = (128, 128)
num_classes = 23
embed_dims = 64
norm_cfg = dict(type='BN', requires_grad=True)
attn_cfg = dict(embed_dims=embed_dims, num_heads=4, attn_drop=0.0, proj_drop=0.0,
                dropout_layer=None, batch_first=True)
data_preprocessor = dict(size=crop_size)
model = dict(
    data_preprocessor=data_preprocessor,
    backbone=dict(
        depth=18,
        stem_channels=16,
        base_channels=16,
        norm_cfg=norm_cfg,
        init_cfg=None),
    decode_head=dict(
        # conditional encodings inside the deformable encoder, as the official code
        key_pos_placement='encoder',
        hrca_omega=4,
        in_channels=[16, 32, 64, 128],
        feat_channels=embed_dims,
        out_channels=embed_dims,
        num_classes=num_classes,
        num_queries=16,
        pixel_decoder=dict(
            norm_cfg=dict(type='GN', num_groups=8),
            encoder=dict(
                num_layers=1,
                layer_cfg=dict(
                    self_attn_cfg=dict(embed_dims=embed_dims, num_heads=4),
                    ffn_cfg=dict(embed_dims=embed_dims, feedforward_channels=128))),
            positional_encoding=dict(num_feats=embed_dims // 2)),
        positional_encoding=dict(num_feats=embed_dims // 2),
        transformer_decoder=dict(
            num_layers=5,
            layer_cfg=dict(
                self_attn_cfg=attn_cfg,
                cross_attn_cfg=attn_cfg,
                ffn_cfg=dict(embed_dims=embed_dims, feedforward_channels=128))),
        loss_cls=dict(class_weight=[1.0] * num_classes + [0.1]),
        train_cfg=dict(num_points=512)))
train_dataloader = dict(batch_size=4)
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.05, eps=1e-8, betas=(0.9, 0.999)),
    clip_grad=dict(max_norm=1.0, norm_type=2),
    paramwise_cfg=dict(
        custom_keys={
            'query_embed': dict(decay_mult=0.0),
            'query_feat': dict(decay_mult=0.0),
            'level_embed': dict(decay_mult=0.0),
        },
        norm_decay_mult=0.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=20),
    dict(type='PolyLR', eta_min=0, power=0.9, begin=20, end=200, by_epoch=False),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=200, val_interval=100)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=20, log_metric_by_epoch=False),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=100, max_keep_ckpts=1))
