# PYRA for semantic segmentation with Segmenter's light mask-transformer head (not
# published by the PYRA authors): ViT-B/16 with PYRA token merging ('low' schedule
# rescaled to 1025 tokens) and LoRA, merged tokens unmerged at the last layer. The
# published dense token-reduction speed-ups (ALGM, CTS, Expedite) are measured with this
# head, whose cost is small next to the backbone's, unlike UPerNet's. Optimisation as
# mmseg's Segmenter ADE20K recipe (SGD 1e-3, wd 0, poly, 160k iterations, 8 GPUs x 1
# image). Bring data/ade/ADEChallengeData2016 and the ViT-B/16 checkpoint.
_base_ = [
    '../../_base_/models/segmenter_pyra-vit-b16.py',
    'mmseg::_base_/datasets/ade20k.py',
    '../../_base_/schedules/seg_iter-160k.py',
    '../../_base_/default_runtime_seg.py',
]
crop_size = (512, 512)
model = dict(data_preprocessor=dict(size=crop_size))
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=0.001, momentum=0.9, weight_decay=0.0),
    clip_grad=None)
param_scheduler = [
    dict(type='PolyLR', eta_min=1e-4, power=0.9, begin=0, end=160000, by_epoch=False),
]
train_dataloader = dict(batch_size=1)
val_dataloader = dict(batch_size=1)
test_dataloader = val_dataloader
default_hooks = dict(checkpoint=dict(interval=16000))
