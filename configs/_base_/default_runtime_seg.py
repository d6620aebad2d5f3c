# Runtime for mmseg (segmentation) configs of MMAdapt.
_base_ = ['mmseg::_base_/default_runtime.py']

# Registers PYRAViT, EmbeddedSegDataset, RNGStateHook and applies the
# checkpoint-loading fix.
custom_imports = dict(imports=['projects'], allow_failed_imports=False)

# mmseg keeps these in its schedules; here they live in the runtime and the
# schedules only change intervals.
default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=10, log_metric_by_epoch=False),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(
        type='CheckpointHook', by_epoch=False, interval=2000, max_keep_ckpts=3),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='SegVisualizationHook'))

# Python / numpy / torch RNG states go into every checkpoint, so `--resume` repeats
# the uninterrupted run exactly (dropout, drop-path and the random crops/flips).
custom_hooks = [dict(type='RNGStateHook')]

# gloo works with and without GPUs; tools/train.py switches it to nccl when CUDA is
# available (an explicit --cfg-options env_cfg.dist_cfg.backend=... still wins).
env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    dist_cfg=dict(backend='gloo'))
randomness = dict(seed=None, deterministic=False)
