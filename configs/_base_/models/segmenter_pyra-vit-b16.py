# Segmenter (Strudel et al., ICCV 2021; mmseg's SegmenterMaskTransformerHead: 2 joint
# patch/class-token layers and a mask product, no convolutions) on a PYRA ViT-B/16 with
# LoRA on q/k/v, frozen backbone, head fully trained. The head reads the patch tokens of
# the last layer (out_indices=(11,), after the final LayerNorm, as mmseg's Segmenter); a
# merging backbone unmerges them back to the full 1/16 grid there, the same tap rule as
# the UPerNet configs (upernet_pyra-vit-b16.py), with one tap instead of four.
# Leaves choose merge_mode / merge_schedule.
_base_ = ['./pyra-vit-b16_seg-512.py']
data_preprocessor = dict(
    type='SegDataPreProcessor',
    # the augreg / Segmenter ViT weights expect inputs scaled to [-1, 1]
    mean=[127.5, 127.5, 127.5],
    std=[127.5, 127.5, 127.5],
    bgr_to_rgb=True,
    pad_val=0,
    seg_pad_val=255,
    size=(512, 512))
model = dict(
    type='EncoderDecoder',
    data_preprocessor=data_preprocessor,
    backbone=dict(out_indices=(11, ), final_norm=True),
    decode_head=dict(
        type='SegmenterMaskTransformerHead',
        in_channels=768,
        channels=768,
        num_classes=150,
        num_layers=2,
        num_heads=12,
        embed_dims=768,
        dropout_ratio=0.0,
        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)),
    train_cfg=dict(),
    # slide inference at the crop size keeps the build-time token count, so the merge
    # schedule and PYRA's rank weights are used exactly as trained (stride as mmseg's
    # Segmenter)
    test_cfg=dict(mode='slide', crop_size=(512, 512), stride=(480, 480)))
