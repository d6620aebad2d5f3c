# SPViT fine-tune base for DeiT-B (the dense model; spvit_export swaps in the compact
# backbone and its gathered checkpoint).
_base_ = ['./_base_/spvit_finetune_deit.py']
model = dict(
    backbone=dict(arch='deit-b', init_cfg=dict(checkpoint='checkpoints/deit_base_patch16_224-b5f2ef4d.pth')),
    head=dict(in_channels=768))
