# The ViT-B/16 backbone of the 512x512 segmentation configs: frozen, LoRA rank 8 on
# q/k/v, on the method-free ViT. Head bases (UPerNet, Segmenter) set the taps and the
# final norm; pyra-vit-b16_seg-512.py adds PYRA merging.
model = dict(
    backbone=dict(
        type='ComposableViT',
        arch='b',
        img_size=(512, 512),
        patch_size=16,
        out_type='featmap',
        with_cls_token=True,
        drop_path_rate=0.1,
        interpolate_mode='bicubic',
        lora_cfg=dict(rank=8, alpha=8, dropout=0.1),
        frozen=True,
        init_cfg=dict(type='Pretrained',
                      checkpoint='checkpoints/vit_base_patch16_224.augreg_in21k.pth')))
