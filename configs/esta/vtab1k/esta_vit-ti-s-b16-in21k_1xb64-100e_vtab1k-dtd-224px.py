_base_ = ['./_base_/esta_vit-ti-s-b16-in21k_1xb64-100e_vtab1k.py']
# VTAB-1k dtd: 47 classes; data in data/vtab-1k/dtd (bring your own)
task = 'dtd'
model = dict(head=dict(num_classes=47))
data_preprocessor = dict(num_classes=47)
train_dataloader = dict(dataset=dict(task=task, data_root='data/vtab-1k/dtd'))
val_dataloader = dict(dataset=dict(task=task, data_root='data/vtab-1k/dtd'))
test_dataloader = val_dataloader
