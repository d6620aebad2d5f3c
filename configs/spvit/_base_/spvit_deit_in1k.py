# DeiT on ImageNet-1k as SPViT's official code trains it (DeiT augmentations: RandAugment
# m9, random erasing 0.25, mixup 0.8, cutmix 1.0, label smoothing 0.1), on the one ViT.
# Leaves set the arch, the weights and the schedule. Bring data/imagenet and the DeiT
# checkpoints (timm / DeiT .pth files load directly).
_base_ = [
    'mmpretrain::_base_/datasets/imagenet_bs64_swin_224.py',
    '../../_base_/default_runtime_cls.py',
]
model = dict(
    type='AuxLossImageClassifier',
    backbone=dict(
        type='ComposableViT',
        arch='deit-s',
        img_size=224,
        patch_size=16,
        out_type='cls_token',
        drop_path_rate=0.1,
        init_cfg=dict(type='Pretrained',
                      checkpoint='checkpoints/deit_small_patch16_224-cd65a155.pth')),
    neck=None,
    head=dict(
        type='LinearClsHead',
        num_classes=1000,
        in_channels=384,
        loss=dict(type='LabelSmoothLoss', label_smooth_val=0.1, mode='original')),
    train_cfg=dict(augments=[dict(type='Mixup', alpha=0.8), dict(type='CutMix', alpha=1.0)]))
# 8 GPUs x 128 images (official batch 128 per GPU)
train_dataloader = dict(batch_size=128)
val_dataloader = dict(batch_size=128)
test_dataloader = val_dataloader
# the official lr is 5e-5 x total batch / 512
auto_scale_lr = dict(base_batch_size=512)
