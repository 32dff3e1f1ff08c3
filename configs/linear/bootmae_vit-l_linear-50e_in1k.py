# BootMAE ViT-L/16 linear probing on ImageNet-1k, 50 epochs (docs/method.md
# section 8; published 77.1 top-1): the first 18 of 24 blocks, frozen;
# base lr 0.07 instead of ViT-B's 0.1.
#   tools/dist_train.sh configs/linear/bootmae_vit-l_linear-50e_in1k.py 8 \
#       --cfg-options model.backbone.init_cfg.checkpoint=PATH
_base_ = ['./bootmae_vit-b_linear-90e_in1k.py']

model = dict(
    backbone=dict(arch='l', depth=18),
    neck=dict(input_features=1024),
    head=dict(in_channels=1024))

# LARS, lr = 0.07 x batch / 256 = 4.48 at 16384 (ViT-B: 0.1, lr 6.4)
optim_wrapper = dict(optimizer=dict(lr=0.07 * 16384 / 256))

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
