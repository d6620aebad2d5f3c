# PYRA ViT-L/16 + SETR-PUP on ADE20K 512x512: LoRA rank 12 and PYRA generators in the
# frozen backbone, the PUP decoder and auxiliary heads fully trained (mmseg's SETR
# recipe: SGD 1e-3, head lr x10, poly, 160k iterations, 8 GPUs x 2 images).
_base_ = [
    '../../_base_/models/setr-pup_pyra-vit-l16.py',
    'mmseg::_base_/datasets/ade20k.py',
    '../../_base_/schedules/seg_iter-160k.py',
    '../../_base_/default_runtime_seg.py',
]
crop_size = (512, 512)
model = dict(data_preprocessor=dict(size=crop_size))
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=0.001, momentum=0.9, weight_decay=0.0),
    paramwise_cfg=dict(custom_keys={'head': dict(lr_mult=10.)}))
train_dataloader = dict(batch_size=2)
val_dataloader = dict(batch_size=1)
test_dataloader = val_dataloader
default_hooks = dict(checkpoint=dict(interval=16000))
