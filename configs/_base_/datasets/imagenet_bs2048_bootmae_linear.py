# ImageNet-1k for BootMAE linear probing (docs/method.md section 8):
# RandomResizedCrop 224 + flip, bicubic (pillow) as the reference's probe;
# the test pipeline (resize 256 bicubic + center crop 224), normalization,
# loaders and layout: imagenet_bootmae_cls.py.
_base_ = ['./imagenet_bootmae_cls.py']

train_pipeline = [
    # unreadable files are skipped with a warning (skip_bad=False: error)
    dict(type='RobustLoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=224, backend='pillow',
         interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]

train_dataloader = dict(
    batch_size=2048,
    drop_last=True,
    dataset=dict(pipeline=train_pipeline))

val_dataloader = dict(batch_size=256, drop_last=False)
test_dataloader = val_dataloader
