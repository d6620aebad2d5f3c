# SPT on the supervised Swin-B (ImageNet-21k, window 7, 224 px) for VTAB-1k, thesis
# Table 2.3, with the shared recipe of spt_vtab1k_recipe.py; global average pooling +
# linear head (fully trained, outside the budget). Units: swin_units (q/k/v/proj/fc1/
# fc2, biases, norms, patch-merging reductions; not the relative position tables).
# Checkpoint: an mmpretrain-format Swin-B ImageNet-21k state dict with `backbone.` keys,
# e.g. the official swin_base_patch4_window7_224_22k.pth converted with mmpretrain's
# tools/model_converters/swin2mmpretrain.py. Users bring it.
_base_ = ['./spt_vtab1k_recipe.py']
model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='SPTSwin',
        arch='base',
        img_size=224,
        window_size=7,
        drop_path_rate=0.1,
        spt_cfg={{_base_.spt_vtab1k}},
        init_cfg=dict(type='Pretrained', prefix='backbone.',
                      checkpoint='checkpoints/swin-base_in21k-mmpretrain.pth')),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=100,
        in_channels=1024,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0),
        init_cfg=dict(type='TruncNormal', layer='Linear', std=0.02)))
