_base_ = ['./_base_/esta_vit-ti-s-b16-in21k_1xb64-100e_vtab1k.py']
# VTAB-1k cifar: 100 classes; data in data/vtab-1k/cifar (bring your own)
task = 'cifar'
model = dict(head=dict(num_classes=100))
data_preprocessor = dict(num_classes=100)
train_dataloader = dict(dataset=dict(task=task, data_root='data/vtab-1k/cifar'))
val_dataloader = dict(dataset=dict(task=task, data_root='data/vtab-1k/cifar'))
test_dataloader = val_dataloader
