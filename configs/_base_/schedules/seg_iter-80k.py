# 80k-iteration segmentation loop (optimizer and LR policy live in the leaves; hook
# intervals too, since default_hooks belong to the runtime).
train_cfg = dict(type='IterBasedTrainLoop', max_iters=80000, val_interval=8000)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
