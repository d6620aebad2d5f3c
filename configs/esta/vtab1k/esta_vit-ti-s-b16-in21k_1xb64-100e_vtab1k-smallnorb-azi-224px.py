_base_ = ['./_base_/esta_vit-ti-s-b16-in21k_1xb64-100e_vtab1k.py']
# VTAB-1k smallnorb_azi: 18 classes; data in data/vtab-1k/smallnorb_azi (bring your own)
task = 'smallnorb_azi'
model = dict(head=dict(num_classes=18))
data_preprocessor = dict(num_classes=18)
train_dataloader = dict(dataset=dict(task=task, data_root='data/vtab-1k/smallnorb_azi'))
val_dataloader = dict(dataset=dict(task=task, data_root='data/vtab-1k/smallnorb_azi'))
test_dataloader = val_dataloader
