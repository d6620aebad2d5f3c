# SPViT fine-tune base for ADE20K: UPerNet on a fully fine-tuned ViT-B/16 (taps 2/5/8/11
# unmerged to 1/16 and rescaled 4x/2x/1x/0.5x), AdamW 6e-5, wd 0.01, 1500-iteration
# warm-up then poly, 160k iterations, 8 GPUs x 2 images, slide inference 512 / 341.
# spvit_export swaps in the compact backbone (its out_indices taps stay). Bring
# data/ade/ADEChallengeData2016 and the ViT-B/16 checkpoint.
_base_ = [
    '../../_base_/models/upernet_vit-b16.py',
    'mmseg::_base_/datasets/ade20k.py',
    '../../_base_/schedules/seg_iter-160k.py',
    '../../_base_/default_runtime_seg.py',
]
crop_size = (512, 512)
model = dict(
    type='AuxLossEncoderDecoder',
    data_preprocessor=dict(size=crop_size),
    backbone=dict(lora_cfg=None, frozen=False),
    test_cfg=dict(mode='slide', crop_size=crop_size, stride=(341, 341)))
optim_wrapper = dict(
    _delete_=True, type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=6e-5, betas=(0.9, 0.999), weight_decay=0.01),
    paramwise_cfg=dict(custom_keys={'pos_embed': dict(decay_mult=0.0),
                                    'cls_token': dict(decay_mult=0.0),
                                    'norm': dict(decay_mult=0.0)}))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=1500),
    dict(type='PolyLR', eta_min=0.0, power=1.0, by_epoch=False, begin=1500, end=160000),
]
train_dataloader = dict(batch_size=2)
val_dataloader = dict(batch_size=1)
test_dataloader = val_dataloader
default_hooks = dict(checkpoint=dict(interval=16000))
