# Ablation (1): MAE-style pixel-only baseline with BootMAE's masking.
# No feature branch, no momentum target, plain (not target-aware) decoder.
_base_ = '../../../configs/bootmae_vit-b_800e.py'

model = dict(
    pixel_decoder=dict(cross_attention=False),
    feature_decoder=None,
    feature_head=None)

# no momentum target, so none of the recipe's hooks that drive it
custom_hooks = []
