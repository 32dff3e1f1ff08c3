# What mmpretrain's get_model / FeatureExtractor read to embed an image with
# a pretraining model (the model-zoo entries of the pretraining configs,
# configs/zoo/): the fine-tuning test preprocessing. Not for training: a
# config to train with has no test loop.
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
# (mmpretrain reads only the pipeline, and the dataset type's class names:
# none for a pretraining model)
test_dataloader = dict(
    dataset=dict(type='CustomDataset', pipeline=test_pipeline))
