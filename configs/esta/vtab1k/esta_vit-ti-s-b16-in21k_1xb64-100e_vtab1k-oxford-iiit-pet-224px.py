_base_ = ['./_base_/esta_vit-ti-s-b16-in21k_1xb64-100e_vtab1k.py']
# VTAB-1k oxford_iiit_pet: 37 classes; data in data/vtab-1k/oxford_iiit_pet (bring your own)
task = 'oxford_iiit_pet'
model = dict(head=dict(num_classes=37))
data_preprocessor = dict(num_classes=37)
train_dataloader = dict(dataset=dict(task=task, data_root='data/vtab-1k/oxford_iiit_pet'))
val_dataloader = dict(dataset=dict(task=task, data_root='data/vtab-1k/oxford_iiit_pet'))
test_dataloader = val_dataloader
