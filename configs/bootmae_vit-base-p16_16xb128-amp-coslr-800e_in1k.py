# OpenMMLab-style name of configs/bootmae_vit-b_800e.py
_base_ = './bootmae_vit-b_800e.py'
