# BootMAE ViT-B/16 fine-tuning on ImageNet-1k, 100 epochs (docs/method.md
# section 8; published 84.2 top-1), 16 GPUs x 128 = 2048 images per step:
#   tools/dist_train.sh configs/finetune/bootmae_vit-b_ft-100e_in1k.py 16 \
#       --cfg-options model.backbone.init_cfg.checkpoint=PATH
# PATH: a checkpoint of our pretraining (its online encoder; add
# model.backbone.init_cfg.source=target for the momentum target) or a
# reference BootMAE pretraining / fine-tuning checkpoint.
_base_ = [
    '../_base_/models/bootmae_vit-base-p16_finetune.py',
    '../_base_/datasets/imagenet_bs128_bootmae_finetune.py',
    '../_base_/default_runtime.py',
]

# AdamW lr 5e-3 for 2048 images per step (not rescaled), wd 0.05 except
# norms, biases, cls_token and pos_embed; layer-wise lr decay 0.6:
# block i gets lr * 0.6 ** (12 - i), patch embedding lr * 0.6 ** 13.
optim_wrapper = dict(
    type='AmpOptimWrapper',
    loss_scale='dynamic',
    optimizer=dict(
        type='AdamW', lr=5e-3, weight_decay=0.05, betas=(0.9, 0.999)),
    constructor='LearningRateDecayOptimWrapperConstructor',
    paramwise_cfg=dict(
        layer_decay_rate=0.6,
        custom_keys={
            '.ln': dict(decay_mult=0.0),
            '.bias': dict(decay_mult=0.0),
            '.cls_token': dict(decay_mult=0.0),
            '.pos_embed': dict(decay_mult=0.0)
        }))

# 20 linear warm-up epochs, then cosine to 1e-6, per iteration
param_scheduler = [
    dict(
        type='LinearLR',
        start_factor=1e-4,
        by_epoch=True,
        begin=0,
        end=20,
        convert_to_iter_based=True),
    dict(
        type='CosineAnnealingLR',
        T_max=80,
        by_epoch=True,
        begin=20,
        end=100,
        eta_min=1e-6,
        convert_to_iter_based=True)
]

train_cfg = dict(by_epoch=True, max_epochs=100, val_interval=1)
val_cfg = dict()
test_cfg = dict()

# the lr above is for 2048 images per step; `--auto-scale-lr` rescales it
auto_scale_lr = dict(base_batch_size=2048)

# model EMA 0.9998 (mmengine's momentum is 1 - decay); validation and test
# run on the EMA weights, and checkpoints hold them in `state_dict`
custom_hooks = [
    dict(type='EMAHook', momentum=2e-4, priority='ABOVE_NORMAL'),
]

default_hooks = dict(
    logger=dict(type='LoggerHook', interval=100),
    checkpoint=dict(interval=1, max_keep_ckpts=3, save_best='auto'))
