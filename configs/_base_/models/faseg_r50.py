# FASeg (thesis ch. 5): mmseg's Mask2Former R50 head settings with dynamic
# focus-aware positional queries and high-resolution cross-attention switched on.
# Decoder as the official code: 13 layers cycling 1/32, 1/16, 1/8 and an HRCA
# layer on the 1/4 map (t = 3, 7, 11), conditional (PEG) key positions, masked
# attention threshold 0.15, first DFPQ pooled over the predicted background.
# Leaves set num_classes, crop size (data_preprocessor.size) and the schedule.
num_classes = 150
norm_cfg = dict(type='SyncBN', requires_grad=False)  # frozen BN as mmseg / official
data_preprocessor = dict(
    type='SegDataPreProcessor',
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    bgr_to_rgb=True,
    pad_val=0,
    seg_pad_val=255,
    size=(512, 512),
    test_cfg=dict(size_divisor=32))
embed_dims = 256
attn_cfg = dict(
    embed_dims=embed_dims, num_heads=8, attn_drop=0.0, proj_drop=0.0,
    dropout_layer=None, batch_first=True)
model = dict(
    type='EncoderDecoder',
    data_preprocessor=data_preprocessor,
    backbone=dict(
        type='ResNet',
        depth=50,
        deep_stem=False,
        num_stages=4,
        out_indices=(0, 1, 2, 3),
        frozen_stages=-1,
        norm_cfg=norm_cfg,
        style='pytorch',
        init_cfg=dict(type='Pretrained', checkpoint='torchvision://resnet50')),
    decode_head=dict(
        type='FASegHead',
        with_dfpq=True,
        with_hrca=True,
        key_pos_type='conditional',
        attn_mask_threshold=0.15,
        dfpq_init_pool='background',
        hrca_omega=32,
        hrca_selection='window',
        in_channels=[256, 512, 1024, 2048],
        strides=[4, 8, 16, 32],
        feat_channels=embed_dims,
        out_channels=embed_dims,
        num_classes=num_classes,
        num_queries=100,
        num_transformer_feat_level=3,
        align_corners=False,
        pixel_decoder=dict(
            type='mmdet.MSDeformAttnPixelDecoder',
            num_outs=3,  # FASegHead asks for the extra 1/4 level itself
            norm_cfg=dict(type='GN', num_groups=32),
            act_cfg=dict(type='ReLU'),
            encoder=dict(
                num_layers=6,
                layer_cfg=dict(
                    self_attn_cfg=dict(
                        embed_dims=embed_dims, num_heads=8, num_levels=3, num_points=4,
                        im2col_step=64, dropout=0.0, batch_first=True, norm_cfg=None,
                        init_cfg=None),
                    ffn_cfg=dict(
                        embed_dims=embed_dims, feedforward_channels=1024, num_fcs=2,
                        ffn_drop=0.0, act_cfg=dict(type='ReLU', inplace=True))),
                init_cfg=None),
            positional_encoding=dict(num_feats=embed_dims // 2, normalize=True),
            init_cfg=None),
        enforce_decoder_input_project=False,
        positional_encoding=dict(num_feats=embed_dims // 2, normalize=True),
        transformer_decoder=dict(
            return_intermediate=True,
            num_layers=13,  # 10 masked cross-attention layers + 3 HRCA layers
            layer_cfg=dict(
                self_attn_cfg=attn_cfg,
                cross_attn_cfg=attn_cfg,
                ffn_cfg=dict(
                    embed_dims=embed_dims, feedforward_channels=2048, num_fcs=2,
                    act_cfg=dict(type='ReLU', inplace=True), ffn_drop=0.0,
                    dropout_layer=None, add_identity=True)),
            init_cfg=None),
        loss_cls=dict(
            type='mmdet.CrossEntropyLoss',
            use_sigmoid=False,
            loss_weight=2.0,
            reduction='mean',
            class_weight=[1.0] * num_classes + [0.1]),
        loss_mask=dict(
            type='mmdet.CrossEntropyLoss', use_sigmoid=True, reduction='mean',
            loss_weight=5.0),
        loss_dice=dict(
            type='mmdet.DiceLoss', use_sigmoid=True, activate=True, reduction='mean',
            naive_dice=True, eps=1.0, loss_weight=5.0),
        train_cfg=dict(
            num_points=12544,
            oversample_ratio=3.0,
            importance_sample_ratio=0.75,
            assigner=dict(
                type='mmdet.HungarianAssigner',
                match_costs=[
                    dict(type='mmdet.ClassificationCost', weight=2.0),
                    dict(type='mmdet.CrossEntropyLossCost', weight=5.0, use_sigmoid=True),
                    dict(type='mmdet.DiceCost', weight=5.0, pred_act=True, eps=1.0)
                ]),
            sampler=dict(type='mmdet.MaskPseudoSampler'))),
    train_cfg=dict(),
    test_cfg=dict(mode='whole'))
