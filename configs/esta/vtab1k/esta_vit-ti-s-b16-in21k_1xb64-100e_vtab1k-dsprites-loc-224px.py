_base_ = ['./_base_/esta_vit-ti-s-b16-in21k_1xb64-100e_vtab1k.py']
# VTAB-1k dsprites_loc: 16 classes; data in data/vtab-1k/dsprites_loc (bring your own)
task = 'dsprites_loc'
model = dict(head=dict(num_classes=16))
data_preprocessor = dict(num_classes=16)
train_dataloader = dict(dataset=dict(task=task, data_root='data/vtab-1k/dsprites_loc'))
val_dataloader = dict(dataset=dict(task=task, data_root='data/vtab-1k/dsprites_loc'))
test_dataloader = val_dataloader
