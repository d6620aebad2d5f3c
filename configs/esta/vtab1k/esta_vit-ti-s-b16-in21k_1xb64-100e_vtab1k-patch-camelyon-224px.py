_base_ = ['./_base_/esta_vit-ti-s-b16-in21k_1xb64-100e_vtab1k.py']
# VTAB-1k patch_camelyon: 2 classes; data in data/vtab-1k/patch_camelyon (bring your own)
task = 'patch_camelyon'
model = dict(head=dict(num_classes=2))
data_preprocessor = dict(num_classes=2)
train_dataloader = dict(dataset=dict(task=task, data_root='data/vtab-1k/patch_camelyon'))
val_dataloader = dict(dataset=dict(task=task, data_root='data/vtab-1k/patch_camelyon'))
test_dataloader = val_dataloader
