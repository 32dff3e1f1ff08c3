# ImageNet-1k for BootMAE fine-tuning (docs/method.md section 8):
# RandomResizedCrop 224 bicubic, flip, RandAugment rand-m9-mstd0.5-inc1,
# random erasing 0.25; 128 images per GPU. Validation / test data,
# normalization and layout: imagenet_bootmae_cls.py.
_base_ = ['./imagenet_bootmae_cls.py']

train_pipeline = [
    # unreadable files are skipped with a warning (skip_bad=False: error)
    dict(type='RobustLoadImageFromFile'),
    dict(
        type='RandomResizedCrop',
        scale=224,
        backend='pillow',
        interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    # timm's rand-m9-mstd0.5-inc1: 2 ops, magnitude 9 of 10 (std 0.5),
    # "increasing" policies; the padding colour is the mean image value
    dict(
        type='RandAugment',
        policies='timm_increasing',
        num_policies=2,
        total_level=10,
        magnitude_level=9,
        magnitude_std=0.5,
        hparams=dict(pad_val=[128, 128, 128], interpolation='bicubic')),
    # timm's RandomErasing(0.25, mode='pixel') on normalized images = noise
    # of the normalization's mean and std on raw pixels
    dict(
        type='RandomErasing',
        erase_prob=0.25,
        mode='rand',
        min_area_ratio=0.02,
        max_area_ratio=1 / 3,
        fill_color=[127.5, 127.5, 127.5],
        fill_std=[127.5, 127.5, 127.5]),
    dict(type='PackInputs'),
]

train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
