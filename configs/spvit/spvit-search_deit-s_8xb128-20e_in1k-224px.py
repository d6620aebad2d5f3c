# SPViT search on DeiT-S (official: lambda 3.0, target 3.2 GMACs, arc_lr 5e-4).
_base_ = ['./_base_/spvit_search_deit.py']
spvit_finetune_base = './spvit-finetune_deit-s_8xb128-200e_in1k-224px.py'
model = dict(
    backbone=dict(
        arch='deit-s',
        aux_losses=[dict(type='SPViTFlopsLoss', target=3.2, weight=3.0, unit=1e9,
                         extra_macs=384 * 1000)],
        init_cfg=dict(checkpoint='checkpoints/deit_small_patch16_224-cd65a155.pth')),
    head=dict(in_channels=384))
optim_wrapper = dict(paramwise_cfg=dict(gate_lr=5e-4))
custom_hooks = [
    dict(type='RNGStateHook'),
    dict(type='SPViTSearchHook', interval=5, by_epoch=True, search_length=20,
         log_interval=100, constant_gate_lr=True, extra_macs=384 * 1000),
]
