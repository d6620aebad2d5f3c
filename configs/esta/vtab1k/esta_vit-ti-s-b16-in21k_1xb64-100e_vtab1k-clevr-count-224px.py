_base_ = ['./_base_/esta_vit-ti-s-b16-in21k_1xb64-100e_vtab1k.py']
# VTAB-1k clevr_count: 8 classes; data in data/vtab-1k/clevr_count (bring your own)
task = 'clevr_count'
model = dict(head=dict(num_classes=8))
data_preprocessor = dict(num_classes=8)
train_dataloader = dict(dataset=dict(task=task, data_root='data/vtab-1k/clevr_count'))
val_dataloader = dict(dataset=dict(task=task, data_root='data/vtab-1k/clevr_count'))
test_dataloader = val_dataloader
