# SPViT fine-tune base for DeiT-S (the dense model; spvit_export swaps in the compact
# backbone and its gathered checkpoint).
_base_ = ['./_base_/spvit_finetune_deit.py']
model = dict(
    backbone=dict(arch='deit-s', init_cfg=dict(checkpoint='checkpoints/deit_small_patch16_224-cd65a155.pth')),
    head=dict(in_channels=384))
