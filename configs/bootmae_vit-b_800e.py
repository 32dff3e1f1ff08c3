# BootMAE ViT-B/16 pretraining, 800 epochs on ImageNet-1k, 16 GPUs x 128:
#   tools/dist_train.sh configs/bootmae_vit-b_800e.py 16
_base_ = [
    '_base_/models/bootmae_vit-base-p16.py',
    '_base_/datasets/imagenet_bootmae.py',
    '_base_/schedules/adamw_coslr-800e_bootmae.py',
    '_base_/default_runtime.py',
]

custom_hooks = [
    # EMA 0.999 -> 0.9999 over 100 epochs, then dynamic to 0.99999 by 400
    dict(
        type='MomentumTargetHook',
        start=0.999,
        base=0.9999,
        ramp_epochs=100,
        dynamic=True,
        final=0.99999,
        dynamic_epochs=300),
    # feature-loss weight: linear ramp over the first quarter of training
    dict(type='FeatureWeightRampHook', ramp_fraction=0.25),
    # Representation monitor (README "Representation monitor"): weighted
    # k-NN (k = 20, cosine, T = 0.07) of 5000 ImageNet val images against a
    # labelled train subset, and RankMe, every 50 epochs; each rank embeds
    # its shard. The bank file lists e.g. 10 train images per class, in the
    # format of meta/train.txt. Uncomment to turn it on:
    # dict(
    #     type='RepresentationMonitorHook',
    #     interval=50,
    #     bank=dict(split='train', ann_file='meta/train_10_per_class.txt'),
    #     query=dict(split='val', indices=5000),
    #     batch_size=256,
    #     num_workers=8),
]

default_hooks = dict(
    logger=dict(type='LoggerHook', interval=100),
    checkpoint=dict(interval=1, max_keep_ckpts=3))
