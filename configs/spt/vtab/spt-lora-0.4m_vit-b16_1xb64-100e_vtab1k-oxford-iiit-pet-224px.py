_base_ = ['../_base_/spt_vit-b16_vtab1k.py']
# SPT-LoRA (rank 8) with a 0.4M trainable-parameter budget in the backbone;
# VTAB-1k oxford_iiit_pet: 37 classes; data in data/vtab-1k/oxford_iiit_pet (bring your own).
# The first run computes the allocation file (SPTRunner), later runs reuse it.
# Weights: Google's original ImageNet-21k ViT-B/16 (ViT-B_16.npz, JAX, read directly),
# as SPT's code uses; README "Which weights" for the augreg alternative.
task = 'oxford_iiit_pet'
model = dict(
    backbone=dict(spt_cfg=dict(
        allocation='work_dirs/spt_cache/vit-b16_oxford_iiit_pet_lora-r8_0.4m.pth',
        budget=400000,
        structured=dict(type='lora', rank=8, dropout=0.1)),
        init_cfg=dict(checkpoint='checkpoints/ViT-B_16.npz')),
    head=dict(num_classes=37))
data_preprocessor = dict(num_classes=37)
train_dataloader = dict(dataset=dict(task=task, data_root='data/vtab-1k/oxford_iiit_pet'))
val_dataloader = dict(dataset=dict(task=task, data_root='data/vtab-1k/oxford_iiit_pet'))
test_dataloader = val_dataloader
