# SPViT fine-tune base for DeiT-T (the dense model; spvit_export swaps in the compact
# backbone and its gathered checkpoint).
_base_ = ['./_base_/spvit_finetune_deit.py']
model = dict(
    backbone=dict(arch='deit-t', init_cfg=dict(checkpoint='checkpoints/deit_tiny_patch16_224-a1311bcf.pth')),
    head=dict(in_channels=192))
