# Snapshot input of the analysis tools: a tiny DyT classifier (4 layers, 32 px, MLP
# dispatch + adapter, rate loss, complete-model pass), as in the DyT tool tests.
_base_ = ['../../configs/pyra-vit-tiny-p8_4xb4-3e_vtab1k-fashion-mnist-56px.py']
img_size = 32
pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(img_size, img_size), interpolation='bicubic',
         backend='pillow'),
    dict(type='PackInputs'),
]
train_dataloader = dict(dataset=dict(pipeline=pipeline))
val_dataloader = dict(dataset=dict(pipeline=pipeline))
test_dataloader = val_dataloader
model = dict(
    type='DyTImageClassifier',
    distill=True,
    backbone=dict(
        arch=dict(embed_dims=32, num_layers=4, num_heads=2, feedforward_channels=64),
        img_size=img_size,
        frozen=True,
        block_cfg=dict(mlp_gate=dict(type='DyTDispatcher', tau=5.0),
                       adapter=dict(type='DyTAdapter', bottleneck=4, dropout=0.1)),
        aux_losses=[dict(type='TokenRateLoss', target=0.5, weight=2.0)]))
