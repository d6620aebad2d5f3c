# SPViT search on DeiT-B (official: lambda 0.08, target 6.0 GMACs, arc_lr 1e-3).
_base_ = ['./_base_/spvit_search_deit.py']
spvit_finetune_base = './spvit-finetune_deit-b_8xb128-200e_in1k-224px.py'
model = dict(
    backbone=dict(
        arch='deit-b',
        aux_losses=[dict(type='SPViTFlopsLoss', target=6.0, weight=0.08, unit=1e9,
                         extra_macs=768 * 1000)],
        init_cfg=dict(checkpoint='checkpoints/deit_base_patch16_224-b5f2ef4d.pth')),
    head=dict(in_channels=768))
optim_wrapper = dict(paramwise_cfg=dict(gate_lr=1e-3))
custom_hooks = [
    dict(type='RNGStateHook'),
    dict(type='SPViTSearchHook', interval=5, by_epoch=True, search_length=20,
         log_interval=100, constant_gate_lr=True, extra_macs=768 * 1000),
]
