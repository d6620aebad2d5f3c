# The ViT-S/16 variant of the PYRA Segmenter ADE20K config (Segmenter's ViT-S: 384
# channels, 12 layers, 6 heads; the head sized as mmseg's Segmenter ViT-S). The arch is
# given as a dict so that PYRA's ViT preset 'low' applies (the 'deit-s' name would pick
# the DeiT preset).
_base_ = ['./pyra-lora-low_segmenter-mask_vit-b16_8xb1-160k_ade20k-512x512.py']
model = dict(
    backbone=dict(
        arch=dict(_delete_=True, embed_dims=384, num_layers=12, num_heads=6,
                  feedforward_channels=1536),
        init_cfg=dict(checkpoint='checkpoints/vit_small_patch16_224.augreg_in21k.pth')),
    decode_head=dict(in_channels=384, channels=384, num_heads=6, embed_dims=384))
