# PYRA's VTAB-1k recipe (THU-MIG/PYRA scripts + train.py defaults): AdamW lr 1e-3,
# wd 1e-4 (none on biases / 1-D parameters), 100 epochs, 10 linear warm-up epochs from
# 1e-6 then cosine to 1e-5, stepped per epoch, fp32, evaluation every 10 epochs.
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-3, weight_decay=1e-4, eps=1e-8, betas=(0.9, 0.999)),
    paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0, flat_decay_mult=0.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=True, begin=0, end=10),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True, begin=10, end=100),
]
train_cfg = dict(by_epoch=True, max_epochs=100, val_interval=10)
val_cfg = dict()
test_cfg = dict()
auto_scale_lr = dict(base_batch_size=32)
