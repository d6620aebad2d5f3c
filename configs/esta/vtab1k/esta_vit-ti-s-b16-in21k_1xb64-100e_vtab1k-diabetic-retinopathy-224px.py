_base_ = ['./_base_/esta_vit-ti-s-b16-in21k_1xb64-100e_vtab1k.py']
# VTAB-1k diabetic_retinopathy: 5 classes; data in data/vtab-1k/diabetic_retinopathy (bring your own)
task = 'diabetic_retinopathy'
model = dict(head=dict(num_classes=5))
data_preprocessor = dict(num_classes=5)
train_dataloader = dict(dataset=dict(task=task, data_root='data/vtab-1k/diabetic_retinopathy'))
val_dataloader = dict(dataset=dict(task=task, data_root='data/vtab-1k/diabetic_retinopathy'))
test_dataloader = val_dataloader
