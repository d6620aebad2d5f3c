_base_ = ['../_base_/spt_swin-b_vtab1k.py']
# SPT-LoRA (rank 8) with a 0.43M trainable-parameter budget in the backbone;
# VTAB-1k diabetic_retinopathy: 5 classes; data in data/vtab-1k/diabetic_retinopathy (bring your own).
# The first run computes the allocation file (SPTRunner), later runs reuse it.
task = 'diabetic_retinopathy'
model = dict(
    backbone=dict(spt_cfg=dict(
        allocation='work_dirs/spt_cache/swin-b_diabetic_retinopathy_lora-r8_0.43m.pth',
        budget=430000,
        structured=dict(type='lora', rank=8, dropout=0.1))),
    head=dict(num_classes=5))
data_preprocessor = dict(num_classes=5)
train_dataloader = dict(dataset=dict(task=task, data_root='data/vtab-1k/diabetic_retinopathy'))
val_dataloader = dict(dataset=dict(task=task, data_root='data/vtab-1k/diabetic_retinopathy'))
test_dataloader = val_dataloader
