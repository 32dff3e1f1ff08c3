# BootMAE with mmpretrain's stock BEiTViT as the encoder: a ViT-B/16 with a
# relative position bias shared by all blocks and no absolute position
# embedding (BEiT's pretraining encoder), everything else as the ViT-B/16
# 800-epoch recipe. The decoders follow the encoder (768 wide, 12 heads,
# 14 x 14 patches). What differs from the paper: ../README.md.
#   tools/dist_train.sh \
#       projects/bootmae_beit_encoder/configs/bootmae_beit-vit-b-p16_800e.py 16
_base_ = '../../../configs/bootmae_vit-b_800e.py'

model = dict(
    backbone=dict(
        _delete_=True,
        type='BEiTViT',
        arch='base',
        img_size=224,
        patch_size=16,
        # the bias of BEiT's pretraining: one table shared by all blocks
        # (a table per block, BEiTViT's default, works too); no absolute
        # position embedding
        use_abs_pos_emb=False,
        use_rel_pos_bias=False,
        use_shared_rel_pos_bias=True,
        layer_scale_init_value=0.1,
        # the latent is normalized as BootMAE's (the taps are not)
        final_norm=True,
        # no pooled output: its norm would be a parameter without gradient
        out_type='raw'))

# no weight decay on the bias table, as BEiT (gamma_1/2 and q/v biases are
# 1-D: already without decay)
optim_wrapper = dict(
    paramwise_cfg=dict(
        custom_keys={'relative_position_bias_table': dict(decay_mult=0.)}))
