# DyT (MLP dispatch, r = 0.5) for ADE20K, as the official DyT segmentation code
# (NUS-HPC-AI-Lab/Dynamic-Tuning, dense_tasks/Segmentation): ViT-B/16 at 512 px,
# drop-path 0.1, frozen backbone with a token dispatcher before every MLP and a d = 64
# adapter (scale 0.1) on every token; taps 3/5/7/11 (no final norm) turned into a
# 4x/2x/1x/0.5x pyramid (ConvT, ConvT, identity, max-pool) for UPerNet with 768
# channels; the rate loss (weight 2) joins mmseg's losses as `loss_token`, and there is
# no distillation pass. AdamW 1e-3, wd 0.05, 1500-iteration linear warm-up then poly,
# 160k iterations, 8 GPUs x 2 images, mean = std = 127.5, slide inference 512 / 341.
# Differences from the official code: mmseg's Feature2Pyramid has a BN inside its 4x
# branch (commented out there), and the official backbone adds BEiT-style relative
# position biases that this ViT does not have. Bring data/ade/ADEChallengeData2016
# and the ViT-B/16 checkpoint.
_base_ = [
    '../../_base_/models/upernet_vit-b16.py',
    'mmseg::_base_/datasets/ade20k.py',
    '../../_base_/schedules/seg_iter-160k.py',
    '../../_base_/default_runtime_seg.py',
]
crop_size = (512, 512)
data_preprocessor = dict(mean=[127.5, 127.5, 127.5], std=[127.5, 127.5, 127.5],
                         size=crop_size)
model = dict(
    type='AuxLossEncoderDecoder',
    data_preprocessor=data_preprocessor,
    backbone=dict(
        out_indices=(3, 5, 7, 11),
        lora_cfg=None,
        block_cfg=dict(mlp_gate=dict(type='DyTDispatcher', tau=5.0),
                       adapter=dict(type='DyTAdapter', bottleneck=64, scale=0.1,
                                    dropout=0.1)),
        aux_losses=[dict(type='TokenRateLoss', target=0.5, weight=2.0, name='loss_token')]),
    neck=dict(_delete_=True, type='Feature2Pyramid', embed_dim=768, rescales=[4, 2, 1, 0.5],
              norm_cfg=dict(type='SyncBN', requires_grad=True)),
    decode_head=dict(channels=768),
    auxiliary_head=dict(in_index=2),
    test_cfg=dict(mode='slide', crop_size=crop_size, stride=(341, 341)))
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-3, betas=(0.9, 0.999), weight_decay=0.05))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=1500),
    dict(type='PolyLR', eta_min=0.0, power=1.0, by_epoch=False, begin=1500, end=160000),
]
train_dataloader = dict(batch_size=2)
val_dataloader = dict(batch_size=1)
test_dataloader = val_dataloader
default_hooks = dict(checkpoint=dict(interval=16000))
