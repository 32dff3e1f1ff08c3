# ImageNet-1k for BootMAE linear probing, as mmpretrain's MAE linear-probe
# benchmark (RandomResizedCrop 224 + flip; test: resize 256 + center crop
# 224, pillow); normalization, loaders and layout: imagenet_bootmae_cls.py.
_base_ = ['./imagenet_bootmae_cls.py']

train_pipeline = [
    # unreadable files are skipped with a warning (skip_bad=False: error)
    dict(type='RobustLoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=224, backend='pillow'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]

test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=256, edge='short', backend='pillow'),
    dict(type='CenterCrop', crop_size=224),
    dict(type='PackInputs'),
]

train_dataloader = dict(
    batch_size=2048,
    drop_last=True,
    dataset=dict(pipeline=train_pipeline))

val_dataloader = dict(
    batch_size=256,
    drop_last=False,
    dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
