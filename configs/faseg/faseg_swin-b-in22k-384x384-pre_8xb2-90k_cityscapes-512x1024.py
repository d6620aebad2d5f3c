# FASeg Swin-B (ImageNet-22k, 384 px) on Cityscapes 512 x 1024, 90k (no official
# number; mmseg's Mask2Former: 83.5). Optimiser keys as the Swin-T leaves.
_base_ = ['./faseg_swin-t_8xb2-90k_cityscapes-512x1024.py']
pretrained = 'https://download.openmmlab.com/mmsegmentation/v0.5/pretrain/swin/swin_base_patch4_window12_384_22k_20220317-e5c09f74.pth'  # noqa
depths = [2, 2, 18, 2]
model = dict(
    backbone=dict(
        pretrain_img_size=384,
        embed_dims=128,
        depths=depths,
        num_heads=[4, 8, 16, 32],
        window_size=12,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    decode_head=dict(in_channels=[128, 256, 512, 1024]))
backbone_norm_multi = dict(lr_mult=0.1, decay_mult=0.0)
custom_keys = {
    f'backbone.stages.{stage}.blocks.{block}.norm': backbone_norm_multi
    for stage, num_blocks in enumerate(depths) for block in range(num_blocks)
}
optim_wrapper = dict(paramwise_cfg=dict(custom_keys=custom_keys))
