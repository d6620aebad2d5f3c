# SPViT search inside an mmseg UPerNet (none of the published code does this): the
# fine-tune base with every MSA as the unified MSA/conv layer (3x3 conv on the full
# 32x32 crop grid) and gated FFN units; loss_flops (backbone GMACs at the 512 crop,
# 60 % of the dense ViT-B) joins the segmentation losses via AuxLossEncoderDecoder.
# lambda 1e-3 puts the FLOPs loss slightly above the segmentation loss at the start
# (the official rule, issue #4). Gates: constant lr 1e-3, no weight decay. The search
# runs 16k iterations (10 % of the schedule); the architecture is written every 4k.
_base_ = ['./spvit-finetune_upernet_vit-b16_8xb2-160k_ade20k-512x512.py']
spvit_finetune_base = './spvit-finetune_upernet_vit-b16_8xb2-160k_ade20k-512x512.py'
model = dict(backbone=dict(
    block_cfg=dict(attn_cfg=dict(type='SPViTAttention', alpha=1e-2, theta_init=1.5,
                                 skip_op='zero'),
                   mlp_cfg=dict(type='SPViTGatedMlp', theta_init=1.5)),
    aux_losses=[dict(type='SPViTFlopsLoss', target_ratio=0.6, weight=1e-3, unit=1e9)]))
optim_wrapper = dict(constructor='SPViTOptimWrapperConstructor',
                     paramwise_cfg=dict(gate_lr=1e-3))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=1500),
    dict(type='PolyLR', eta_min=0.0, power=1.0, by_epoch=False, begin=1500, end=16000),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=16000, val_interval=4000)
default_hooks = dict(checkpoint=dict(interval=4000))
custom_hooks = [
    dict(type='RNGStateHook'),
    dict(type='SPViTSearchHook', interval=4000, by_epoch=False, search_length=16000,
         log_interval=50),
]
