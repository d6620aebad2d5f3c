# SPViT search on DeiT-T (official: lambda 20, target 1.0 GMACs, arc_lr 1e-3).
_base_ = ['./_base_/spvit_search_deit.py']
spvit_finetune_base = './spvit-finetune_deit-t_8xb128-200e_in1k-224px.py'
model = dict(
    backbone=dict(
        arch='deit-t',
        aux_losses=[dict(type='SPViTFlopsLoss', target=1.0, weight=20, unit=1e9,
                         extra_macs=192 * 1000)],
        init_cfg=dict(checkpoint='checkpoints/deit_tiny_patch16_224-a1311bcf.pth')),
    head=dict(in_channels=192))
optim_wrapper = dict(paramwise_cfg=dict(gate_lr=1e-3))
custom_hooks = [
    dict(type='RNGStateHook'),
    dict(type='SPViTSearchHook', interval=5, by_epoch=True, search_length=20,
         log_interval=100, constant_gate_lr=True, extra_macs=192 * 1000),
]
