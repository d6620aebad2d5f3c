_base_ = ['./_base_/esta_vit-ti-s-b16-in21k_1xb64-100e_vtab1k.py']
# VTAB-1k kitti: 4 classes; data in data/vtab-1k/kitti (bring your own)
task = 'kitti'
model = dict(head=dict(num_classes=4))
data_preprocessor = dict(num_classes=4)
train_dataloader = dict(dataset=dict(task=task, data_root='data/vtab-1k/kitti'))
val_dataloader = dict(dataset=dict(task=task, data_root='data/vtab-1k/kitti'))
test_dataloader = val_dataloader
