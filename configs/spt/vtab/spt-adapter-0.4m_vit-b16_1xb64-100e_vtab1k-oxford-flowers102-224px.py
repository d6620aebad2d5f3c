_base_ = ['../_base_/spt_vit-b16_vtab1k.py']
# SPT-Adapter (rank 8) with a 0.4M trainable-parameter budget in the backbone;
# VTAB-1k oxford_flowers102: 102 classes; data in data/vtab-1k/oxford_flowers102 (bring your own).
# The first run computes the allocation file (SPTRunner), later runs reuse it.
# Weights: Google's original ImageNet-21k ViT-B/16 (ViT-B_16.npz, JAX, read directly),
# as SPT's code uses; README "Which weights" for the augreg alternative.
task = 'oxford_flowers102'
model = dict(
    backbone=dict(spt_cfg=dict(
        allocation='work_dirs/spt_cache/vit-b16_oxford_flowers102_adapter-r8_0.4m.pth',
        budget=400000,
        structured=dict(type='adapter', rank=8, dropout=0.1)),
        init_cfg=dict(checkpoint='checkpoints/ViT-B_16.npz')),
    head=dict(num_classes=102))
data_preprocessor = dict(num_classes=102)
train_dataloader = dict(dataset=dict(task=task, data_root='data/vtab-1k/oxford_flowers102'))
val_dataloader = dict(dataset=dict(task=task, data_root='data/vtab-1k/oxford_flowers102'))
test_dataloader = val_dataloader
