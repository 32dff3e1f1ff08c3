# BootMAE ViT-L/16 pretraining, 800 epochs on ImageNet-1k, 16 GPUs x 128:
#   tools/dist_train.sh configs/bootmae_vit-l_800e.py 16
_base_ = './bootmae_vit-b_800e.py'

# the decoders follow the encoder (1024 wide, 16 heads)
model = dict(backbone=dict(arch='l'))

# min lr 1e-5; EMA without the dynamic phase (docs/method.md section 7)
min_lr = 1e-5
param_scheduler = [
    dict(
        type='LinearLR',
        start_factor=1e-8,
        by_epoch=True,
        begin=0,
        end=40,
        convert_to_iter_based=True),
    dict(
        type='CosineAnnealingLR',
        T_max=760,
        eta_min=min_lr,
        by_epoch=True,
        begin=40,
        end=800,
        convert_to_iter_based=True),
]
custom_hooks = [
    dict(
        type='MomentumTargetHook',
        start=0.999,
        base=0.9999,
        ramp_epochs=100,
        dynamic=False),
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
