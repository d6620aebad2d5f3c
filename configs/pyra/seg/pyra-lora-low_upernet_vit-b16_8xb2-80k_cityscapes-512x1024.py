# PYRA ViT-B/16 + UPerNet on Cityscapes 512x1024 crops (2048 patch tokens; the 'low'
# schedule is rescaled to them). Slide inference at the crop size. Bring data/cityscapes.
_base_ = [
    '../../_base_/models/upernet_pyra-vit-b16.py',
    'mmseg::_base_/datasets/cityscapes.py',
    '../../_base_/schedules/seg_iter-80k.py',
    '../../_base_/schedules/seg_adamw-vit.py',
    '../../_base_/default_runtime_seg.py',
]
crop_size = (512, 1024)
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(img_size=crop_size),
    decode_head=dict(num_classes=19),
    auxiliary_head=dict(num_classes=19),
    test_cfg=dict(mode='slide', crop_size=crop_size, stride=(768, 768)))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=1500),
    dict(type='PolyLR', eta_min=0.0, power=1.0, by_epoch=False, begin=1500, end=80000),
]
train_dataloader = dict(batch_size=2)
default_hooks = dict(checkpoint=dict(interval=8000))
