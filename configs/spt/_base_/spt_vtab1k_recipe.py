# The thesis / official SPT recipe for VTAB-1k, shared by every backbone: AdamW lr 1e-3,
# wd 1e-4, batch 64, 100 epochs, 10 warm-up epochs then cosine; sensitivity over C=800
# training samples (batch gradients of 32), thesis allocation rule, LoRA rank 8.
# SPTRunner computes the allocation file on the first run and reuses it after. Backbone
# bases use model=dict(backbone=dict(spt_cfg={{_base_.spt_vtab1k}})); leaves set the
# task, the budget, the structured type and the cache path.
_base_ = [
    '../../_base_/datasets/vtab1k_224px.py',
    '../../_base_/schedules/vtab1k_adamw-cosine_100e.py',
    '../../_base_/default_runtime_cls.py',
]
custom_imports = dict(imports=['projects', 'projects.spt'], allow_failed_imports=False)
runner_type = 'SPTRunner'
spt_vtab1k = dict(
    allocation='work_dirs/spt_cache/<backbone>_<task>_<type>-r8_<budget>.pth',
    budget=400_000,
    structured=dict(type='lora', rank=8, scale=1.0, dropout=0.1),
    rule='thesis',
    sensitivity=dict(num_samples=800, batch_size=32, train_mode=False))
train_dataloader = dict(batch_size=64)
auto_scale_lr = dict(base_batch_size=64)
custom_hooks = [dict(type='RNGStateHook'), dict(type='SPTAllocationHook')]
