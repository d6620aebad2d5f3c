# SPT-Adapter (rank 8, sequential on the chosen matrices' outputs) with a 0.4M budget,
# VTAB-1k cifar. Adapters are non-linear: this model is deployed as trained (no
# folding into the plain ViT).
_base_ = ['../_base_/spt_vit-b16_vtab1k.py']
task = 'cifar'
model = dict(
    backbone=dict(spt_cfg=dict(
        allocation='work_dirs/spt_cache/vit-b16_cifar_adapter-r8_0.4m.pth',
        budget=400_000,
        structured=dict(type='adapter', rank=8, dropout=0.1))),
    head=dict(num_classes=100))
data_preprocessor = dict(num_classes=100)
train_dataloader = dict(dataset=dict(task=task, data_root='data/vtab-1k/cifar'))
val_dataloader = dict(dataset=dict(task=task, data_root='data/vtab-1k/cifar'))
test_dataloader = val_dataloader
