# LoRA-only baseline (no token merging), PYRA's VTAB-1k recipe.
_base_ = [
    '../../../_base_/models/pyra-vit-l16_vtab1k.py',
    '../../../_base_/datasets/vtab1k_224px.py',
    '../../../_base_/schedules/vtab1k_adamw-cosine_100e.py',
    '../../../_base_/default_runtime_cls.py',
]
# The weights PYRA fine-tunes: Google's original ImageNet-21k ViT-L/16, the JAX archive
# as released (gs://vit_models/imagenet21k/ViT-L_16.npz), read directly.
# timm's AugReg IN-21k weights are other weights (README "Which weights"); to use them:
# --cfg-options model.backbone.init_cfg.checkpoint=checkpoints/vit_large_patch16_224.augreg_in21k.pth
model = dict(backbone=dict(init_cfg=dict(checkpoint='checkpoints/ViT-L_16.npz')))
