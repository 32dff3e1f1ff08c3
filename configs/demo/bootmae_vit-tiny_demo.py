# The main job: BootMAE, full method, on the embedded demo pictures, on a
# laptop CPU in minutes (README "Main job"):
#   python tools/train.py configs/demo/bootmae_vit-tiny_demo.py
# ViT-tiny-sized encoder (128 wide, 4 blocks) on 64 px images with 8 px
# patches (8 x 8 grid, 48 of 64 masked), both target-aware decoders, the
# momentum target and the feature-weight ramp on a short schedule, with the
# k-NN / RankMe monitor on. The data
# (6 classes of drawn shapes and textures, ImageNet layout) is drawn into
# data/demo on first use; the work dir gets checkpoints, the scalar log,
# reconstruction grids (vis/) and curves.png. Check what it learned with
#   python tools/knn_eval.py configs/demo/bootmae_vit-tiny_demo.py \
#       work_dirs/bootmae_vit-tiny_demo/epoch_<N>.pth
_base_ = ['../bootmae_vit-b_800e.py']

img_size = 64
patch_size = 8
num_masking_patches = 48  # 75 %
embed_dims = 128
num_heads = 4

model = dict(
    backbone=dict(
        arch=dict(_delete_=True, embed_dims=embed_dims, num_layers=4,
                  num_heads=num_heads,
                  feedforward_channels=4 * embed_dims),
        img_size=img_size,
        patch_size=patch_size),
    # the decoders follow the encoder (width, heads, grid, patch size); the
    # pixel decoder is 128 wide here instead of 512
    pixel_decoder=dict(embed_dims=128),
    num_masking_patches=num_masking_patches)

train_pipeline = [
    dict(type='RobustLoadImageFromFile'),
    dict(
        type='RandomResizedCrop',
        scale=img_size,
        crop_ratio_range=(0.4, 1.0),
        backend='pillow',
        interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5),
    dict(
        type='BootMAEMaskGenerator',
        img_size=img_size,
        patch_size=patch_size,
        num_masking_patches=num_masking_patches,
        num_block_masking_patches=40,
        min_num_patches=4,
        max_num_patches=20,
        random_roll=True),
    dict(type='PackInputs'),
]

train_dataloader = dict(
    batch_size=32,
    num_workers=2,
    persistent_workers=False,
    pin_memory=False,
    # the base config's per-sample seeding (exact resume) around the demo
    # pictures, drawn into `root` on first use
    dataset=dict(
        _delete_=True,
        type='SeededDataset',
        dataset=dict(
            type='BootMAEDemoDataset',
            root='data/demo',
            split='train',
            num_train=100,  # per class: 600 pictures, 19 iterations/epoch
            num_val=50,
            pipeline=train_pipeline)))

# fp32 AdamW; a short schedule wants a larger lr than the 800-epoch recipe
max_epochs = 50
warmup_epochs = 1
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(
        type='AdamW', lr=2e-3, betas=(0.9, 0.95), weight_decay=0.05),
    paramwise_cfg=dict(
        flat_decay_mult=0.0,
        bias_decay_mult=0.0,
        custom_keys={
            'pos_embed': dict(decay_mult=0.),
            'cls_token': dict(decay_mult=0.),
        }))
param_scheduler = [
    dict(
        type='LinearLR',
        start_factor=1e-3,
        by_epoch=True,
        begin=0,
        end=warmup_epochs,
        convert_to_iter_based=True),
    dict(
        type='CosineAnnealingLR',
        T_max=max_epochs - warmup_epochs,
        eta_min=1e-5,
        by_epoch=True,
        begin=warmup_epochs,
        end=max_epochs,
        convert_to_iter_based=True),
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs)
auto_scale_lr = dict(base_batch_size=32)

custom_hooks = [
    # EMA 0.99 -> 0.999 over the first 4 epochs (short-schedule version of
    # the 0.999 -> 0.9999 recipe), then constant
    dict(type='MomentumTargetHook', start=0.99, base=0.999, ramp_epochs=4),
    # feature-loss weight: linear ramp over the first quarter of training
    dict(type='FeatureWeightRampHook', ramp_fraction=0.25),
    # reconstruction grids (work_dir/vis/iter_*.png) + curves.png at the end
    dict(type='ReconstructionVisualizationHook', interval=50, num_images=6),
    # representation quality while it trains: weighted k-NN (k = 20, cosine,
    # T = 0.07) of the val pictures against the train pictures and RankMe,
    # on mean-pooled tokens of the online encoder, before the first
    # iteration (= the random encoder), every 10 epochs and at the end;
    # logged as knn/top1, knn/top5, rankme, monitor/time
    dict(type='RepresentationMonitorHook', interval=10,
         bank=dict(split='train'), query=dict(split='val')),
]

default_hooks = dict(
    logger=dict(type='LoggerHook', interval=5),
    checkpoint=dict(interval=1, max_keep_ckpts=2))
vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(type='UniversalVisualizer', vis_backends=vis_backends)
