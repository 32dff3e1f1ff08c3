# Ablation (3): + target-aware decoders = the full BootMAE recipe
# (pixel decoder attends to block 0, feature decoder to the last block).
_base_ = '../../../configs/bootmae_vit-b_800e.py'
