# SETR-PUP on a PYRA ViT-L/16 (taps 9/14/19/23 unmerged to the full grid), LoRA rank 12,
# frozen backbone, heads fully trained.
norm_cfg = dict(type='SyncBN', requires_grad=True)
data_preprocessor = dict(
    type='SegDataPreProcessor',
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    bgr_to_rgb=True,
    pad_val=0,
    seg_pad_val=255,
    size=(512, 512))
model = dict(
    type='EncoderDecoder',
    data_preprocessor=data_preprocessor,
    backbone=dict(
        type='PYRAViT',
        arch='l',
        img_size=(512, 512),
        patch_size=16,
        out_type='featmap',
        out_indices=(9, 14, 19, 23),
        final_norm=True,
        with_cls_token=True,
        drop_rate=0.0,
        interpolate_mode='bilinear',
        merge_mode='pyra',
        merge_schedule='low',
        lora_cfg=dict(rank=12, alpha=12, dropout=0.1),
        frozen=True,
        init_cfg=dict(type='Pretrained',
                      checkpoint='checkpoints/vit_large_patch16_384.augreg_in21k_ft_in1k.pth')),
    decode_head=dict(
        type='SETRUPHead',
        in_channels=1024,
        channels=256,
        in_index=3,
        num_classes=150,
        dropout_ratio=0,
        norm_cfg=norm_cfg,
        num_convs=4,
        up_scale=2,
        kernel_size=3,
        align_corners=False,
        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)),
    auxiliary_head=[
        dict(type='SETRUPHead', in_channels=1024, channels=256, in_index=i,
             num_classes=150, dropout_ratio=0, norm_cfg=norm_cfg, num_convs=2,
             up_scale=4, kernel_size=3, align_corners=False,
             loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=0.4))
        for i in (0, 1, 2)
    ],
    train_cfg=dict(),
    test_cfg=dict(mode='slide', crop_size=(512, 512), stride=(341, 341)))
