# Model-zoo entry of configs/bootmae_vit-l_800e.py (train with that one):
# the same model, plus the test pipeline mmpretrain's FeatureExtractor reads.
_base_ = [
    '../bootmae_vit-l_800e.py',
    '../_base_/datasets/imagenet_bootmae_features.py',
]
