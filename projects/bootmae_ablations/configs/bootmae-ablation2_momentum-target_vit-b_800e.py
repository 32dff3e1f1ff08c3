# Ablation (2): + momentum-encoder feature target (bootstrapping); both
# decoders are plain MAE-style decoders (no cross-attention to the encoder).
# Momentum and feature-weight hooks are inherited from the full recipe.
_base_ = '../../../configs/bootmae_vit-b_800e.py'

model = dict(
    pixel_decoder=dict(cross_attention=False),
    feature_decoder=dict(cross_attention=False))
