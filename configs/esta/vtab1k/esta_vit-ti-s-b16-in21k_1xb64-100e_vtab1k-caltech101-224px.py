_base_ = ['./_base_/esta_vit-ti-s-b16-in21k_1xb64-100e_vtab1k.py']
# VTAB-1k caltech101: 102 classes; data in data/vtab-1k/caltech101 (bring your own)
task = 'caltech101'
model = dict(head=dict(num_classes=102))
data_preprocessor = dict(num_classes=102)
train_dataloader = dict(dataset=dict(task=task, data_root='data/vtab-1k/caltech101'))
val_dataloader = dict(dataset=dict(task=task, data_root='data/vtab-1k/caltech101'))
test_dataloader = val_dataloader
