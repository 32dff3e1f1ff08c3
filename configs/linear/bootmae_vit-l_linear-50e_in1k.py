# BootMAE ViT-L/16 linear probing on ImageNet-1k, 50 epochs (BOOTMAE.md
# section 8; published 77.1 top-1): the first 18 of 24 blocks, frozen.
#   tools/dist_train.sh configs/linear/bootmae_vit-l_linear-50e_in1k.py 8 \
#       --cfg-options model.backbone.init_cfg.checkpoint=PATH
_base_ = ['./bootmae_vit-b_linear-90e_in1k.py']

model = dict(
    backbone=dict(arch='l', depth=18),
    neck=dict(input_features=1024),
    head=dict(in_channels=1024))

# 10 linear warm-up epochs, then cosine to 0
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
        T_max=40,
        by_epoch=True,
        begin=10,
        end=50,
        eta_min=0.0,
        convert_to_iter_based=True)
]

train_cfg = dict(max_epochs=50)
