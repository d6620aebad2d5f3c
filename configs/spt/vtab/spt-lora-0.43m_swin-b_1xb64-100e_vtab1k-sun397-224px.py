_base_ = ['../_base_/spt_swin-b_vtab1k.py']
# SPT-LoRA (rank 8) with a 0.43M trainable-parameter budget in the backbone;
# VTAB-1k sun397: 397 classes; data in data/vtab-1k/sun397 (bring your own).
# The first run computes the allocation file (SPTRunner), later runs reuse it.
task = 'sun397'
model = dict(
    backbone=dict(spt_cfg=dict(
        allocation='work_dirs/spt_cache/swin-b_sun397_lora-r8_0.43m.pth',
        budget=430000,
        structured=dict(type='lora', rank=8, dropout=0.1))),
    head=dict(num_classes=397))
data_preprocessor = dict(num_classes=397)
train_dataloader = dict(dataset=dict(task=task, data_root='data/vtab-1k/sun397'))
val_dataloader = dict(dataset=dict(task=task, data_root='data/vtab-1k/sun397'))
test_dataloader = val_dataloader
