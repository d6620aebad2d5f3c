# ViT-B/16 (ImageNet-21k weights, timm/jax naming) + LoRA rank 8 on q/k/v, frozen
# backbone, linear head: the PYRA / NOAH VTAB-1k model on the method-free ViT. Users bring the checkpoint.
model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='ComposableViT',
        arch='b',
        img_size=224,
        patch_size=16,
        out_type='cls_token',
        drop_path_rate=0.1,
        final_norm=True,
        lora_cfg=dict(rank=8, alpha=8, dropout=0.1),
        frozen=True,
        init_cfg=dict(type='Pretrained',
                      checkpoint='checkpoints/vit_base_patch16_224.augreg_in21k.pth')),
    neck=None,
    head=dict(
        type='LinearClsHead',
        num_classes=100,
        in_channels=768,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0),
        init_cfg=dict(type='TruncNormal', layer='Linear', std=0.02)))
