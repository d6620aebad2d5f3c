# Tiny SPT-LoRA run for the SPT tool tests: the 2-layer, 32-dim ViT of the tool tests,
# SPT from a sensitivity pass over 8 training images, 2 epochs. The tests set
# model.backbone.spt_cfg.allocation per run. spt_test_hooks (tests/test_spt on
# PYTHONPATH) dumps every rank's trainable set and optimizer state;
# mmadapt_test_hooks (tests/test_tools on PYTHONPATH) can kill a run during a write.
# No dropout / drop-path: a 2-process run (2 x 4 images) and a 1-process run
# (1 x 8 images) then take the same steps and can be compared.
_base_ = ['../../data/configs/pyra-vit-tiny-p8_4xb4-3e_vtab1k-fashion-mnist-56px.py']
custom_imports = dict(imports=['projects', 'projects.spt', 'spt_test_hooks',
                               'mmadapt_test_hooks'],
                      allow_failed_imports=False)
runner_type = 'SPTRunner'
model = dict(
    backbone=dict(
        type='SPTViT',
        drop_rate=0.0,
        drop_path_rate=0.0,
        spt_cfg=dict(
            allocation='spt_cache/tiny.pth',
            budget=1500,
            structured=dict(type='lora', rank=2, dropout=0.0),
            rule='thesis',
            sensitivity=dict(num_samples=8, batch_size=4))))
param_scheduler = [dict(type='CosineAnnealingLR', T_max=2, eta_min=1e-5, by_epoch=True,
                        begin=0, end=2)]
train_cfg = dict(by_epoch=True, max_epochs=2, val_interval=2)
default_hooks = dict(checkpoint=dict(type='CheckpointHook', interval=2, max_keep_ckpts=1))
custom_hooks = [
    dict(type='RNGStateHook'),
    dict(type='SPTAllocationHook'),
    dict(type='DumpTrainableHook'),
]
