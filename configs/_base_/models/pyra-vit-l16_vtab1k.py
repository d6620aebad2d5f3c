# ViT-L/16 (ImageNet-21k) + LoRA rank 12 on q/k/v (PYRA's ViT-L script), frozen backbone.
_base_ = ['./pyra-vit-b16_vtab1k.py']
model = dict(
    backbone=dict(
        arch='l',
        lora_cfg=dict(rank=12, alpha=12, dropout=0.1),
        init_cfg=dict(checkpoint='checkpoints/vit_large_patch16_224.augreg_in21k.pth')),
    head=dict(in_channels=1024))
