# DyT (MLP dispatch, r = 0.5, adapter d = 8: the 0.16 M setting) on ViT-B/16 ImageNet-21k,
# with the official VTAB-1k recipe (NUS-HPC-AI-Lab/Dynamic-Tuning train_vtab.sh +
# main_vtab.py): batch 64, AdamW lr 1e-3, wd 1e-4, 100 epochs, 10 warm-up epochs, cosine
# to 1e-5 stepped per iteration, inception normalisation (mean = std = 127.5), no
# augmentation, rate loss weight 2, distillation from the complete-model pass.
# Leaves set the task and the number of classes; users bring data and checkpoint.
_base_ = [
    '../../../_base_/models/vit-b16_vtab1k.py',
    '../../../_base_/datasets/vtab1k_224px.py',
    '../../../_base_/default_runtime_cls.py',
]
model = dict(
    type='DyTImageClassifier',
    distill=True,
    backbone=dict(
        lora_cfg=None,
        # Google's original ImageNet-21k ViT-B/16 (read as .npz); the official code's
        # timm jx_vit_base_patch16_224_in21k .pth holds the same weights and loads too
        init_cfg=dict(checkpoint='checkpoints/ViT-B_16.npz'),
        block_cfg=dict(mlp_gate=dict(type='DyTDispatcher', tau=5.0),
                       adapter=dict(type='DyTAdapter', bottleneck=8, scale=1.0,
                                    dropout=0.1)),
        aux_losses=[dict(type='TokenRateLoss', target=0.5, weight=2.0)]))
data_preprocessor = dict(mean=[127.5, 127.5, 127.5], std=[127.5, 127.5, 127.5])
train_dataloader = dict(batch_size=64)
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-3, weight_decay=1e-4, betas=(0.9, 0.999)))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=True, begin=0, end=10,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True, begin=10, end=100,
         convert_to_iter_based=True),
]
train_cfg = dict(by_epoch=True, max_epochs=100, val_interval=10)
val_cfg = dict()
test_cfg = dict()
auto_scale_lr = dict(base_batch_size=64)
