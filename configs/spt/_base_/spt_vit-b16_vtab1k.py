# SPT on the supervised ViT-B/16 (ImageNet-21k) for VTAB-1k (thesis Table 2.1), with
# the shared recipe of spt_vtab1k_recipe.py.
_base_ = ['../../_base_/models/vit-b16_vtab1k.py', './spt_vtab1k_recipe.py']
model = dict(backbone=dict(type='SPTViT', lora_cfg=None, spt_cfg={{_base_.spt_vtab1k}}))
