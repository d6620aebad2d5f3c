# The FASeg / Mask2Former optimisation recipe (official code and mmseg's Mask2Former):
# AdamW 1e-4, wd 0.05, backbone lr x0.1, query / level embeddings and norms without
# weight decay, full-model gradient clipping 0.01, poly decay over 160k iterations of
# batch 16, a checkpoint (best mIoU) and a validation every 5k iterations.
_base_ = [
    '../../_base_/default_runtime_seg.py',
    '../../_base_/schedules/seg_iter-160k.py',
]
embed_multi = dict(lr_mult=1.0, decay_mult=0.0)
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=0.0001, weight_decay=0.05, eps=1e-8,
                   betas=(0.9, 0.999)),
    clip_grad=dict(max_norm=0.01, norm_type=2),
    paramwise_cfg=dict(
        custom_keys={
            'backbone': dict(lr_mult=0.1, decay_mult=1.0),
            'query_embed': embed_multi,
            'query_feat': embed_multi,
            'level_embed': embed_multi,  # also hr_level_embed
        },
        norm_decay_mult=0.0))
param_scheduler = [
    dict(type='PolyLR', eta_min=0, power=0.9, begin=0, end=160000, by_epoch=False)
]
train_cfg = dict(val_interval=5000)
default_hooks = dict(
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=5000,
                    save_best='mIoU'))
auto_scale_lr = dict(enable=False, base_batch_size=16)
