# SPViT search on a pretrained DeiT (official main_pruning.py in search mode): every
# block's MSA becomes the unified MSA/conv layer (z, three ordered gates, theta 1.5,
# alpha 1e-2), every FFN hidden unit gets a gate; loss_flops = lambda (target - F)^2
# (F in GMACs with the 1000-class head) joins the loss dict. Two learning rates as the
# official two optimizers: weights AdamW 5e-5 x batch / 512 (cosine), gates a constant
# arc_lr without weight decay. 20 epochs (the official loop returns after epoch 20;
# the published architectures come from the epoch-10 file, spvit_arch_epoch_10.json).
_base_ = ['./spvit_deit_in1k.py']
model = dict(backbone=dict(
    block_cfg=dict(attn_cfg=dict(type='SPViTAttention', alpha=1e-2, theta_init=1.5,
                                 skip_op='zero', damp=True),
                   mlp_cfg=dict(type='SPViTGatedMlp', theta_init=1.5))))
optim_wrapper = dict(
    constructor='SPViTOptimWrapperConstructor',
    optimizer=dict(type='AdamW', lr=5e-5, weight_decay=0.05, eps=1e-8, betas=(0.9, 0.999)),
    paramwise_cfg=dict(gate_lr=5e-4))
param_scheduler = [dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True, begin=0,
                        end=20, convert_to_iter_based=True)]
train_cfg = dict(by_epoch=True, max_epochs=20, val_interval=5)
val_cfg = dict()
test_cfg = dict()
default_hooks = dict(checkpoint=dict(interval=5, max_keep_ckpts=4))
custom_hooks = [
    dict(type='RNGStateHook'),
    dict(type='SPViTSearchHook', interval=5, by_epoch=True, search_length=20,
         log_interval=100, constant_gate_lr=True, extra_macs=384 * 1000),
]
