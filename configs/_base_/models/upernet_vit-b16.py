# UPerNet on the method-free ViT-B/16 with four taps (out_indices as mmseg's ViT-B
# UPerNet), LoRA on q/k/v, frozen backbone, heads fully trained. upernet_pyra-vit-b16.py
# adds PYRA merging (merged tokens are unmerged to the full 1/16 grid at every tap).
_base_ = ['./vit-b16_seg-512.py']
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
    backbone=dict(out_indices=(2, 5, 8, 11), final_norm=False),
    neck=dict(type='MultiLevelNeck', in_channels=[768, 768, 768, 768], out_channels=768,
              scales=[4, 2, 1, 0.5]),
    decode_head=dict(
        type='UPerHead',
        in_channels=[768, 768, 768, 768],
        in_index=[0, 1, 2, 3],
        pool_scales=(1, 2, 3, 6),
        channels=512,
        dropout_ratio=0.1,
        num_classes=150,
        norm_cfg=norm_cfg,
        align_corners=False,
        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)),
    auxiliary_head=dict(
        type='FCNHead',
        in_channels=768,
        in_index=3,
        channels=256,
        num_convs=1,
        concat_input=False,
        dropout_ratio=0.1,
        num_classes=150,
        norm_cfg=norm_cfg,
        align_corners=False,
        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=0.4)),
    train_cfg=dict(),
    # slide inference at the crop size keeps the build-time token count, so the merge
    # schedule and PYRA's rank weights are used exactly as trained
    test_cfg=dict(mode='slide', crop_size=(512, 512), stride=(341, 341)))
