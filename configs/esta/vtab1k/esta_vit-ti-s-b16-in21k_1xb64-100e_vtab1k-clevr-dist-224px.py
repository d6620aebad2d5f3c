_base_ = ['./_base_/esta_vit-ti-s-b16-in21k_1xb64-100e_vtab1k.py']
# VTAB-1k clevr_dist: 6 classes; data in data/vtab-1k/clevr_dist (bring your own)
task = 'clevr_dist'
model = dict(head=dict(num_classes=6))
data_preprocessor = dict(num_classes=6)
train_dataloader = dict(dataset=dict(task=task, data_root='data/vtab-1k/clevr_dist'))
val_dataloader = dict(dataset=dict(task=task, data_root='data/vtab-1k/clevr_dist'))
test_dataloader = val_dataloader
