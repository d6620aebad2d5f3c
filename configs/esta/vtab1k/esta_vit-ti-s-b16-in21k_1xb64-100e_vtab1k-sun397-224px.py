_base_ = ['./_base_/esta_vit-ti-s-b16-in21k_1xb64-100e_vtab1k.py']
# VTAB-1k sun397: 397 classes; data in data/vtab-1k/sun397 (bring your own)
task = 'sun397'
model = dict(head=dict(num_classes=397))
data_preprocessor = dict(num_classes=397)
train_dataloader = dict(dataset=dict(task=task, data_root='data/vtab-1k/sun397'))
val_dataloader = dict(dataset=dict(task=task, data_root='data/vtab-1k/sun397'))
test_dataloader = val_dataloader
