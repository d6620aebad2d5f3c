# A few-iteration schedule for smoke and resume tests: AdamW with a 2-iteration linear
# warm-up then cosine, validation every 4 iterations. Hooks live in the runtimes (a key
# may not be defined by two sibling bases), so a leaf sets the intervals, e.g.
#   default_hooks = dict(logger=dict(interval=1),
#                        checkpoint=dict(by_epoch=False, interval=4))
#   log_processor = dict(by_epoch=False)   # needed with the mmpretrain runtime
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-3, weight_decay=1e-4))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=2),
    dict(type='CosineAnnealingLR', T_max=6, eta_min=1e-5, by_epoch=False, begin=2,
         end=8),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=8, val_interval=4)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
