# mmseg's Swin-B (ImageNet-22k, 384 px pre-training, window 12), drop-path 0.3.
_base_ = ['./swin-t.py']
swin_channels = [128, 256, 512, 1024]
swin_backbone = dict(
    pretrain_img_size=384,
    embed_dims=128,
    depths=[2, 2, 18, 2],
    num_heads=[4, 8, 16, 32],
    window_size=12,
    init_cfg=dict(
        type='Pretrained',
        checkpoint='https://download.openmmlab.com/mmsegmentation/v0.5/pretrain/swin/swin_base_patch4_window12_384_22k_20220317-e5c09f74.pth'))  # noqa
