# VTAB-1k-sized Fashion-MNIST (data/vtab-1k/fashion_mnist, built offline by
# tools/data/make_vtab1k_fashion_mnist.py; 28x28 grayscale PNGs, 10 classes) in the
# PYRA recipe of vtab1k_224px.py: train on train800val200, evaluate on test, direct
# bicubic resize, no augmentation, ImageNet mean/std, BGR->RGB (the grayscale PNGs are
# read as 3-channel images).
#
# Input size: `img_size` is read when this file is evaluated, so a leaf that wants
# another size sets it again *and* re-states the pipeline (four lines):
#
#   img_size = 56
#   pipeline = [dict(type='LoadImageFromFile'),
#               dict(type='Resize', scale=(img_size, img_size), interpolation='bicubic',
#                    backend='pillow'),
#               dict(type='PackInputs')]
#   train_dataloader = dict(dataset=dict(pipeline=pipeline))
#   val_dataloader = dict(dataset=dict(pipeline=pipeline))
#   test_dataloader = val_dataloader
#
# From the command line the Resize step is entry 1 of each pipeline, e.g.
#   --cfg-options train_dataloader.dataset.pipeline.1.scale="(56,56)" \
#                 val_dataloader.dataset.pipeline.1.scale="(56,56)" \
#                 test_dataloader.dataset.pipeline.1.scale="(56,56)"
# (and the backbone's img_size to match).
_base_ = ['./vtab1k_224px.py']

img_size = 224
task = 'fashion_mnist'
data_root = 'data/vtab-1k/fashion_mnist'
data_preprocessor = dict(num_classes=10)
pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(img_size, img_size), interpolation='bicubic',
         backend='pillow'),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    dataset=dict(task=task, data_root=data_root, split='trainval', pipeline=pipeline))
val_dataloader = dict(
    dataset=dict(task=task, data_root=data_root, split='test', pipeline=pipeline))
test_dataloader = val_dataloader
