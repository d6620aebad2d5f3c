_base_ = ['./_base_/esta_vit-ti-s-b16-in21k_1xb64-100e_vtab1k.py']
# VTAB-1k eurosat: 10 classes; data in data/vtab-1k/eurosat (bring your own)
task = 'eurosat'
model = dict(head=dict(num_classes=10))
data_preprocessor = dict(num_classes=10)
train_dataloader = dict(dataset=dict(task=task, data_root='data/vtab-1k/eurosat'))
val_dataloader = dict(dataset=dict(task=task, data_root='data/vtab-1k/eurosat'))
test_dataloader = val_dataloader
