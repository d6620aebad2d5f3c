# The VTAB-1k ViT-B/16 of vit-b16_vtab1k.py as a PYRAViT (leaves switch merging on).
_base_ = ['./vit-b16_vtab1k.py']
model = dict(backbone=dict(type='PYRAViT', merge_mode='none'))
