# Snapshot input of the analysis tools: SPT-LoRA on the tiny 2-layer, 32-dim ViT (56 px),
# a 1500-parameter budget from a sensitivity pass over 8 training images.
_base_ = ['../../configs/pyra-vit-tiny-p8_4xb4-3e_vtab1k-fashion-mnist-56px.py']
custom_imports = dict(imports=['projects', 'projects.spt'], allow_failed_imports=False)
runner_type = 'SPTRunner'
model = dict(
    backbone=dict(
        type='SPTViT',
        drop_rate=0.0,
        drop_path_rate=0.0,
        spt_cfg=dict(
            allocation='work_dirs/spt_cache/snapshot_tiny.pth',
            budget=1500,
            structured=dict(type='lora', rank=2, dropout=0.0),
            rule='thesis',
            sensitivity=dict(num_samples=8, batch_size=4))))
custom_hooks = [dict(type='RNGStateHook'), dict(type='SPTAllocationHook')]
