# A VTAB-1k task in the NOAH/PYRA list layout (data/vtab-1k/<task>/{train800val200,test}.txt),
# PYRA's recipe: train on train800val200, evaluate on test, direct bicubic resize to
# 224x224, no augmentation, ImageNet mean/std. Leaves set task/data_root/num_classes.
dataset_type = 'VTAB1k'
task = 'cifar'
data_preprocessor = dict(
    num_classes=100,
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    to_rgb=True)
pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(224, 224), interpolation='bicubic', backend='pillow'),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    batch_size=32,
    num_workers=2,
    drop_last=True,
    dataset=dict(type=dataset_type, task=task, data_root=f'data/vtab-1k/{task}',
                 split='trainval', pipeline=pipeline),
    sampler=dict(type='DefaultSampler', shuffle=True))
val_dataloader = dict(
    batch_size=64,
    num_workers=2,
    dataset=dict(type=dataset_type, task=task, data_root=f'data/vtab-1k/{task}',
                 split='test', pipeline=pipeline),
    sampler=dict(type='DefaultSampler', shuffle=False))
val_evaluator = dict(type='Accuracy', topk=(1, ))
test_dataloader = val_dataloader
test_evaluator = val_evaluator
