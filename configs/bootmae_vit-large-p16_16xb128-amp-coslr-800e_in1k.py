# OpenMMLab-style name of configs/bootmae_vit-l_800e.py
_base_ = './bootmae_vit-l_800e.py'
