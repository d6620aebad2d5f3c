# SPViT fine-tuning recipe (official): 200 epochs with hard distillation from the DeiT
# RegNetY-16GF teacher (alpha 0.5: 0.5 CE(gt) + 0.5 CE(argmax teacher)), AdamW 5e-5 x
# batch / 512, wd 0.05, no warm-up, cosine, drop-path 0.1, DeiT augmentations. This is
# the dense model: tools/model_converters/spvit_export.py writes a config that inherits
# it and swaps in the compact backbone. Bring the teacher weights
# (https://dl.fbaipublicfiles.com/deit/regnety_160-a5fe301d.pth).
_base_ = ['./spvit_deit_in1k.py']
model = dict(
    type='HardDistillImageClassifier',
    teacher=dict(type='TimmClassifier', model_name='regnety_160', pretrained=False,
                 num_classes=1000),
    teacher_ckpt='checkpoints/regnety_160-a5fe301d.pth',
    teacher_ckpt_prefix='model.',
    alpha=0.5)
optim_wrapper = dict(
    optimizer=dict(type='AdamW', lr=5e-5, weight_decay=0.05, eps=1e-8, betas=(0.9, 0.999)),
    paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0,
                       custom_keys={'.cls_token': dict(decay_mult=0.0),
                                    '.pos_embed': dict(decay_mult=0.0),
                                    '.z': dict(decay_mult=0.0)}),
    clip_grad=None)
param_scheduler = [dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True, begin=0,
                        end=200, convert_to_iter_based=True)]
train_cfg = dict(by_epoch=True, max_epochs=200, val_interval=10)
val_cfg = dict()
test_cfg = dict()
default_hooks = dict(checkpoint=dict(interval=10, max_keep_ckpts=3))
