# Snapshot input of the analysis tools: the tiny 2-layer, 32-dim PYRAViT classifier
# (56 px, patch 8) with rank-2 q/k/v LoRA, eval-only use (dropout off does not matter).
_base_ = ['../../configs/pyra-vit-tiny-p8_4xb4-3e_vtab1k-fashion-mnist-56px.py']
model = dict(backbone=dict(lora_cfg=dict(rank=2, alpha=4)))
