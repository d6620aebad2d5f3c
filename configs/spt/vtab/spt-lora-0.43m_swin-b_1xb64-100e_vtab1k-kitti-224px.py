_base_ = ['../_base_/spt_swin-b_vtab1k.py']
# SPT-LoRA (rank 8) with a 0.43M trainable-parameter budget in the backbone;
# VTAB-1k kitti: 4 classes; data in data/vtab-1k/kitti (bring your own).
# The first run computes the allocation file (SPTRunner), later runs reuse it.
task = 'kitti'
model = dict(
    backbone=dict(spt_cfg=dict(
        allocation='work_dirs/spt_cache/swin-b_kitti_lora-r8_0.43m.pth',
        budget=430000,
        structured=dict(type='lora', rank=8, dropout=0.1))),
    head=dict(num_classes=4))
data_preprocessor = dict(num_classes=4)
train_dataloader = dict(dataset=dict(task=task, data_root='data/vtab-1k/kitti'))
val_dataloader = dict(dataset=dict(task=task, data_root='data/vtab-1k/kitti'))
test_dataloader = val_dataloader
