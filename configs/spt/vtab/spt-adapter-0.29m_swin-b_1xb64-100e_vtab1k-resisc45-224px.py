_base_ = ['../_base_/spt_swin-b_vtab1k.py']
# SPT-Adapter (rank 8) with a 0.29M trainable-parameter budget in the backbone;
# VTAB-1k resisc45: 45 classes; data in data/vtab-1k/resisc45 (bring your own).
# The first run computes the allocation file (SPTRunner), later runs reuse it.
task = 'resisc45'
model = dict(
    backbone=dict(spt_cfg=dict(
        allocation='work_dirs/spt_cache/swin-b_resisc45_adapter-r8_0.29m.pth',
        budget=290000,
        structured=dict(type='adapter', rank=8, dropout=0.1))),
    head=dict(num_classes=45))
data_preprocessor = dict(num_classes=45)
train_dataloader = dict(dataset=dict(task=task, data_root='data/vtab-1k/resisc45'))
val_dataloader = dict(dataset=dict(task=task, data_root='data/vtab-1k/resisc45'))
test_dataloader = val_dataloader
