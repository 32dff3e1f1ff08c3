# BootMAE ViT-L/16 fine-tuning on ImageNet-1k, 50 epochs (docs/method.md
# section 8; published 85.9 top-1), 8 GPUs x 128 = 1024 images per step:
#   tools/dist_train.sh configs/finetune/bootmae_vit-l_ft-50e_in1k.py 8 \
#       --cfg-options model.backbone.init_cfg.checkpoint=PATH
_base_ = ['./bootmae_vit-b_ft-100e_in1k.py']

model = dict(
    backbone=dict(arch='l', drop_path_rate=0.1),
    head=dict(in_channels=1024))

# AdamW lr 1.5e-3 for 1024 images per step, layer-wise lr decay 0.75
optim_wrapper = dict(
    optimizer=dict(lr=1.5e-3), paramwise_cfg=dict(layer_decay_rate=0.75))

# 5 linear warm-up epochs, then cosine to 1e-6
param_scheduler = [
    dict(
        type='LinearLR',
        start_factor=1e-4,
        by_epoch=True,
        begin=0,
        end=5,
        convert_to_iter_based=True),
    dict(
        type='CosineAnnealingLR',
        T_max=45,
        by_epoch=True,
        begin=5,
        end=50,
        eta_min=1e-6,
        convert_to_iter_based=True)
]

train_cfg = dict(max_epochs=50)
auto_scale_lr = dict(base_batch_size=1024)
