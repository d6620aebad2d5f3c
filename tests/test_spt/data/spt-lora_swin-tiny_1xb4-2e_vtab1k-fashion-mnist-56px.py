# Tiny SPT-LoRA Swin for the SPT Swin tests: 2 stages of 2 blocks, 16 -> 32 channels,
# window 7 on the 14x14 patch grid of a 56 px image (stage 1 shifts its windows),
# allocation from a sensitivity pass over 8 training images. Tests set
# model.backbone.spt_cfg.allocation.
_base_ = ['../../data/configs/pyra-vit-tiny-p8_4xb4-3e_vtab1k-fashion-mnist-56px.py']
custom_imports = dict(imports=['projects', 'projects.spt'], allow_failed_imports=False)
runner_type = 'SPTRunner'
model = dict(
    backbone=dict(
        _delete_=True,
        type='SPTSwin',
        arch=dict(embed_dims=16, depths=[2, 2], num_heads=[2, 4]),
        img_size=56,
        window_size=7,
        out_indices=(1, ),
        drop_path_rate=0.1,
        spt_cfg=dict(
            allocation='spt_cache/swin-tiny.pth',
            budget=1200,
            structured=dict(type='lora', rank=2, dropout=0.0),
            rule='thesis',
            sensitivity=dict(num_samples=8, batch_size=4))),
    neck=dict(_delete_=True, type='GlobalAveragePooling'),
    head=dict(in_channels=32))
train_cfg = dict(by_epoch=True, max_epochs=2, val_interval=2)
custom_hooks = [dict(type='RNGStateHook'), dict(type='SPTAllocationHook')]
