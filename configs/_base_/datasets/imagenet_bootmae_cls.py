# ImageNet-1k classification data shared by BootMAE fine-tuning and linear
# probing (docs/method.md section 8): the data preprocessor (normalized as in
# pretraining: mean = std = 0.5 on [0, 1]), the loaders and, for validation
# and test, resize 256 (bicubic, pillow) + center crop 224 and top-1/5
# accuracy. The fine-tuning and linear-probing bases add their training
# pipelines and batch sizes.
# Layout: data/imagenet/{train,val}/<class>/<image> (or meta/{train,val}.txt).
dataset_type = 'ImageNet'
data_root = 'data/imagenet/'

data_preprocessor = dict(
    num_classes=1000,
    mean=[127.5, 127.5, 127.5],
    std=[127.5, 127.5, 127.5],
    to_rgb=True)

test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(
        type='ResizeEdge',
        scale=256,
        edge='short',
        backend='pillow',
        interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=224),
    dict(type='PackInputs'),
]

# the training pipeline comes from the fine-tuning / linear-probing base
train_dataloader = dict(
    batch_size=128,
    num_workers=10,
    persistent_workers=True,
    pin_memory=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(type=dataset_type, data_root=data_root, split='train'))

val_dataloader = dict(
    batch_size=128,
    num_workers=10,
    persistent_workers=True,
    pin_memory=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        split='val',
        pipeline=test_pipeline))
val_evaluator = dict(type='Accuracy', topk=(1, 5))

test_dataloader = val_dataloader
test_evaluator = val_evaluator
