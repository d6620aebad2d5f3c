# FASeg Swin-T on ADE20K 512 x 512, 160k (official: drop-path 0.3; 49.6 mIoU s.s.).
# Backbone as mmseg's Mask2Former Swin-T; its norms and position tables get no
# weight decay, the backbone lr x0.1.
_base_ = ['./faseg_r50_8xb2-160k_ade20k-512x512.py']
pretrained = 'https://download.openmmlab.com/mmsegmentation/v0.5/pretrain/swin/swin_tiny_patch4_window7_224_20220317-1cdeb081.pth'  # noqa
depths = [2, 2, 6, 2]
model = dict(
    backbone=dict(
        _delete_=True,
        type='SwinTransformer',
        embed_dims=96,
        depths=depths,
        num_heads=[3, 6, 12, 24],
        window_size=7,
        mlp_ratio=4,
        qkv_bias=True,
        qk_scale=None,
        drop_rate=0.,
        attn_drop_rate=0.,
        drop_path_rate=0.3,
        patch_norm=True,
        out_indices=(0, 1, 2, 3),
        with_cp=False,
        frozen_stages=-1,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    decode_head=dict(in_channels=[96, 192, 384, 768]))

backbone_norm_multi = dict(lr_mult=0.1, decay_mult=0.0)
embed_multi = dict(lr_mult=1.0, decay_mult=0.0)
custom_keys = {
    'backbone': dict(lr_mult=0.1, decay_mult=1.0),
    'backbone.patch_embed.norm': backbone_norm_multi,
    'backbone.norm': backbone_norm_multi,
    'absolute_pos_embed': backbone_norm_multi,
    'relative_position_bias_table': backbone_norm_multi,
    'query_embed': embed_multi,
    'query_feat': embed_multi,
    'level_embed': embed_multi,
}
custom_keys.update({
    f'backbone.stages.{stage}.blocks.{block}.norm': backbone_norm_multi
    for stage, num_blocks in enumerate(depths) for block in range(num_blocks)
})
custom_keys.update({
    f'backbone.stages.{stage}.downsample.norm': backbone_norm_multi
    for stage in range(len(depths) - 1)
})
optim_wrapper = dict(paramwise_cfg=dict(custom_keys=custom_keys, norm_decay_mult=0.0))
