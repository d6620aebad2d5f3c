# Runtime for mmpretrain (classification) configs of MMAdapt.
_base_ = ['mmpretrain::_base_/default_runtime.py']

# Registers PYRAViT, VTAB1k, RNGStateHook and applies the checkpoint-loading fix.
custom_imports = dict(imports=['projects'], allow_failed_imports=False)

default_hooks = dict(
    logger=dict(type='LoggerHook', interval=10),
    checkpoint=dict(type='CheckpointHook', interval=10, max_keep_ckpts=3))

# Python / numpy / torch RNG states go into every checkpoint, so `--resume` repeats
# the uninterrupted run exactly (dropout and drop-path draw from the torch RNG).
custom_hooks = [dict(type='RNGStateHook')]

# gloo works with and without GPUs; tools/train.py switches it to nccl when CUDA is
# available (an explicit --cfg-options env_cfg.dist_cfg.backend=... still wins).
env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    dist_cfg=dict(backend='gloo'))
