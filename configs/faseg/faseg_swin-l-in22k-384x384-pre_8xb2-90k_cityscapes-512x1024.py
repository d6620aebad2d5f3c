# FASeg Swin-L (ImageNet-22k, 384 px) on Cityscapes 512 x 1024, 90k (no official
# number; mmseg's Mask2Former: 83.7).
_base_ = ['./faseg_swin-b-in22k-384x384-pre_8xb2-90k_cityscapes-512x1024.py']
pretrained = 'https://download.openmmlab.com/mmsegmentation/v0.5/pretrain/swin/swin_large_patch4_window12_384_22k_20220412-6580f57d.pth'  # noqa
model = dict(
    backbone=dict(
        embed_dims=192,
        num_heads=[6, 12, 24, 48],
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    decode_head=dict(in_channels=[192, 384, 768, 1536]))
