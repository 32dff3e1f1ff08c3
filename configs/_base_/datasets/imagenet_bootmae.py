# ImageNet pretraining data for BootMAE (docs/method.md sections 3 and 7):
# RandomResizedCrop 224 (scale 0.2-1, bicubic), flip, block-wise masking of
# 147 of 196 patches. Folder layout: data/imagenet/train/<class>/<image>.
dataset_type = 'ImageNet'
data_root = 'data/imagenet/'

train_pipeline = [
    # unreadable files are skipped with a warning (skip_bad=False: error)
    dict(type='RobustLoadImageFromFile'),
    dict(
        type='RandomResizedCrop',
        scale=224,
        crop_ratio_range=(0.2, 1.0),
        backend='pillow',
        interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5),
    dict(
        type='BootMAEMaskGenerator',
        img_size=224,
        patch_size=16,
        num_masking_patches=147,
        num_block_masking_patches=120,
        random_roll=True),
    dict(type='PackInputs'),
]

train_dataloader = dict(
    batch_size=128,
    num_workers=10,
    persistent_workers=True,
    pin_memory=True,
    # DefaultSampler's order, resumable mid-epoch, one seed per sample ...
    sampler=dict(type='ResumableSampler', shuffle=True),
    # default_collate, with the masks stacked into one tensor that the loader
    # pins and the data preprocessor copies once
    collate_fn=dict(type='mask_collate'),
    # ... from which SeededDataset draws the sample's crop, flip and mask
    dataset=dict(
        type='SeededDataset',
        dataset=dict(
            type=dataset_type,
            data_root=data_root,
            split='train',
            pipeline=train_pipeline)))
