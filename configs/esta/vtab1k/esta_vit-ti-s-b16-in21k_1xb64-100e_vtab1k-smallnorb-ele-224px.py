_base_ = ['./_base_/esta_vit-ti-s-b16-in21k_1xb64-100e_vtab1k.py']
# VTAB-1k smallnorb_ele: 9 classes; data in data/vtab-1k/smallnorb_ele (bring your own)
task = 'smallnorb_ele'
model = dict(head=dict(num_classes=9))
data_preprocessor = dict(num_classes=9)
train_dataloader = dict(dataset=dict(task=task, data_root='data/vtab-1k/smallnorb_ele'))
val_dataloader = dict(dataset=dict(task=task, data_root='data/vtab-1k/smallnorb_ele'))
test_dataloader = val_dataloader
