# mmseg's ViT-B UPerNet optimiser: AdamW 6e-5, wd 0.01, no decay on the position
# embedding, the class token and norms. The LR policy (warm-up + poly to the schedule's
# length) lives in the leaves, next to their iteration count.
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=6e-5, betas=(0.9, 0.999), weight_decay=0.01),
    paramwise_cfg=dict(custom_keys=dict(
        pos_embed=dict(decay_mult=0.0), cls_token=dict(decay_mult=0.0),
        norm=dict(decay_mult=0.0))))
