# BootMAE ViT-B/16 linear probing on ImageNet-1k, 90 epochs (docs/method.md
# section 8; published 66.1 top-1), 8 GPUs x 2048 = 16384 images per step:
#   tools/dist_train.sh configs/linear/bootmae_vit-b_linear-90e_in1k.py 8 \
#       --cfg-options model.backbone.init_cfg.checkpoint=PATH
# Only the first `depth` blocks are built and run (10 of 12), frozen; mean
# of the patch tokens -> LayerNorm -> BatchNorm1d(affine=False, eps 1e-6)
# -> linear head, the only part that trains.
_base_ = [
    '../_base_/datasets/imagenet_bs2048_bootmae_linear.py',
    '../_base_/default_runtime.py',
]

model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='BootMAEViTLinearProbe',
        arch='b',
        depth=10,  # the probed block: the only depth setting
        img_size=224,
        patch_size=16,
        init_cfg=dict(
            type='BootMAEPretrained', checkpoint=None, source='online')),
    neck=dict(type='ClsBatchNormNeck', input_features=768),
    head=dict(
        type='LinearClsHead',
        num_classes=1000,
        in_channels=768,
        loss=dict(type='CrossEntropyLoss'),
        init_cfg=[dict(type='TruncNormal', layer='Linear', std=0.01)]))

# LARS, lr = 0.1 x batch / 256, wd 0
total_batch_size = 16384
optim_wrapper = dict(
    type='AmpOptimWrapper',
    optimizer=dict(
        type='LARS',
        lr=0.1 * total_batch_size / 256,
        weight_decay=0.0,
        momentum=0.9),
    # as MAE's LARS: 1-D tensors (the head's bias) take plain SGD steps,
    # without the trust ratio and without weight decay
    paramwise_cfg=dict(
        custom_keys={'.bias': dict(decay_mult=0.0, lars_exclude=True)}))

# 10 linear warm-up epochs, then cosine to 0, per iteration
param_scheduler = [
    dict(
        type='LinearLR',
        start_factor=1e-4,
        by_epoch=True,
        begin=0,
        end=10,
        convert_to_iter_based=True),
    dict(
        type='CosineAnnealingLR',
        T_max=80,
        by_epoch=True,
        begin=10,
        end=90,
        eta_min=0.0,
        convert_to_iter_based=True)
]

train_cfg = dict(by_epoch=True, max_epochs=90, val_interval=1)
val_cfg = dict()
test_cfg = dict()

# `--auto-scale-lr` keeps lr = 0.1 x batch / 256 for another batch size
auto_scale_lr = dict(base_batch_size=total_batch_size)

default_hooks = dict(
    logger=dict(type='LoggerHook', interval=10),
    checkpoint=dict(interval=1, max_keep_ckpts=3, save_best='auto'))
