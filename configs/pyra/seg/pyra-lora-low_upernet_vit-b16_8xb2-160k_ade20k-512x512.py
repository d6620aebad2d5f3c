# PYRA for semantic segmentation (not published by the PYRA authors): ViT-B/16 with
# PYRA token merging ('low' schedule rescaled to 1025 tokens, ~same merge ratio as
# ViT-B/16 at 224) and LoRA, merged tokens unmerged at taps 2/5/8/11 for UPerNet.
# Optimisation as mmseg's UPerNet ViT-B ADE20K recipe (AdamW 6e-5, wd 0.01, 1500-iter
# warm-up, poly, 160k iterations, 8 GPUs x 2 images). Bring data/ade/ADEChallengeData2016
# and the ViT-B/16 checkpoint.
_base_ = [
    '../../_base_/models/upernet_pyra-vit-b16.py',
    'mmseg::_base_/datasets/ade20k.py',
    '../../_base_/schedules/seg_iter-160k.py',
    '../../_base_/schedules/seg_adamw-vit.py',
    '../../_base_/default_runtime_seg.py',
]
crop_size = (512, 512)
model = dict(data_preprocessor=dict(size=crop_size))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=1500),
    dict(type='PolyLR', eta_min=0.0, power=1.0, by_epoch=False, begin=1500, end=160000),
]
train_dataloader = dict(batch_size=2)
val_dataloader = dict(batch_size=1)
test_dataloader = val_dataloader
default_hooks = dict(checkpoint=dict(interval=16000))
