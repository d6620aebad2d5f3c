_base_ = ['./_base_/esta_vit-ti-s-b16-in21k_1xb64-100e_vtab1k.py']
# VTAB-1k dmlab: 6 classes; data in data/vtab-1k/dmlab (bring your own)
task = 'dmlab'
model = dict(head=dict(num_classes=6))
data_preprocessor = dict(num_classes=6)
train_dataloader = dict(dataset=dict(task=task, data_root='data/vtab-1k/dmlab'))
val_dataloader = dict(dataset=dict(task=task, data_root='data/vtab-1k/dmlab'))
test_dataloader = val_dataloader
