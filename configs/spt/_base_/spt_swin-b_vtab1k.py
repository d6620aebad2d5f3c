# SPT on the supervised Swin-B (ImageNet-21k, window 7, 224 px) for VTAB-1k, thesis
# Table 2.3 with the thesis / official SPT recipe: AdamW lr 1e-3, wd 1e-4, batch 64,
# 100 epochs, 10 warm-up epochs then cosine; sensitivity over C=800 training samples
# (batch gradients of 32), thesis allocation rule; global average pooling + linear head
# (fully trained, outside the budget). Units: swin_units (q/k/v/proj/fc1/fc2, biases,
# norms, patch-merging reductions; not the relative position tables).
# Checkpoint: an mmpretrain-format Swin-B ImageNet-21k state dict with `backbone.` keys,
# e.g. the official swin_base_patch4_window7_224_22k.pth converted with mmpretrain's
# tools/model_converters/swin2mmpretrain.py. Users bring it.
_base_ = [
    '../../_base_/datasets/vtab1k_224px.py',
    '../../_base_/schedules/vtab1k_adamw-cosine_100e.py',
    '../../_base_/default_runtime_cls.py',
]
custom_imports = dict(imports=['projects', 'projects.spt'], allow_failed_imports=False)
runner_type = 'SPTRunner'
model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='SPTSwin',
        arch='base',
        img_size=224,
        window_size=7,
        drop_path_rate=0.1,
        spt_cfg=dict(
            allocation='work_dirs/spt_cache/swin-b_cifar_lora-r8_0.43m.pth',
            budget=430_000,
            structured=dict(type='lora', rank=8, scale=1.0, dropout=0.1),
            rule='thesis',
            sensitivity=dict(num_samples=800, batch_size=32, train_mode=False)),
        init_cfg=dict(type='Pretrained', prefix='backbone.',
                      checkpoint='checkpoints/swin-base_in21k-mmpretrain.pth')),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=100,
        in_channels=1024,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0),
        init_cfg=dict(type='TruncNormal', layer='Linear', std=0.02)))
train_dataloader = dict(batch_size=64)
auto_scale_lr = dict(base_batch_size=64)
custom_hooks = [dict(type='RNGStateHook'), dict(type='SPTAllocationHook')]
