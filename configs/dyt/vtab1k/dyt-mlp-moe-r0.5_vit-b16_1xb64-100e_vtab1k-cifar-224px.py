# DyT with the MoE-adapter (4 experts, weights mixed per image) on cifar.
_base_ = ['./dyt-mlp-r0.5_vit-b16_1xb64-100e_vtab1k-cifar-224px.py']
model = dict(backbone=dict(block_cfg=dict(
    adapter=dict(_delete_=True, type='DyTMoEAdapter', bottleneck=8, num_experts=4,
                 scale=1.0, dropout=0.1))))
