_base_ = ['./_base_/esta_vit-ti-s-b16-in21k_1xb64-100e_vtab1k.py']
# VTAB-1k resisc45: 45 classes; data in data/vtab-1k/resisc45 (bring your own)
task = 'resisc45'
model = dict(head=dict(num_classes=45))
data_preprocessor = dict(num_classes=45)
train_dataloader = dict(dataset=dict(task=task, data_root='data/vtab-1k/resisc45'))
val_dataloader = dict(dataset=dict(task=task, data_root='data/vtab-1k/resisc45'))
test_dataloader = val_dataloader
