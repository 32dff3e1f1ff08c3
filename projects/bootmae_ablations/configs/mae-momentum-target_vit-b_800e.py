# mmpretrain's stock MAE (MAEViT + MAEPretrainDecoder + MAEPretrainHead, its
# own random 75 % masking) plus BootMAE's momentum feature target: our
# BootMAEFeatureDecoder / BootMAEFeatureHead, MomentumTargetHook and
# FeatureWeightRampHook. Data, schedule and runtime: the BootMAE ViT-B recipe
# (the block-wise mask the pipeline makes is not used by MAE).
# MAEWithMomentumTarget is registered by `import bootmae_mm` (the default
# runtime's custom_imports), so a plain Runner runs this config.
_base_ = '../../../configs/bootmae_vit-b_800e.py'

model = dict(
    _delete_=True,
    type='MAEWithMomentumTarget',
    data_preprocessor=dict(
        type='SelfSupDataPreprocessor',
        mean=[127.5, 127.5, 127.5],
        std=[127.5, 127.5, 127.5],
        to_rgb=True),
    backbone=dict(type='MAEViT', arch='b', img_size=224, patch_size=16,
                  mask_ratio=0.75),
    neck=dict(
        type='MAEPretrainDecoder',
        num_patches=196,
        patch_size=16,
        in_chans=3,
        embed_dim=768,
        decoder_embed_dim=512,
        decoder_depth=8,
        decoder_num_heads=16,
        mlp_ratio=4.),
    head=dict(
        type='MAEPretrainHead',
        norm_pix=True,
        patch_size=16,
        loss=dict(type='PixelReconstructionLoss', criterion='L2')),
    # follows the encoder (768 wide, 12 heads, 14 x 14 patches)
    feature_decoder=dict(
        type='BootMAEFeatureDecoder', depth=2, cross_attention=False),
    feature_head=dict(type='BootMAEFeatureHead', weight_mask=True),
    feature_weight=1.0,
    init_cfg=[
        dict(type='Xavier', layer='Linear', distribution='uniform'),
        dict(type='Constant', layer='LayerNorm', val=1.0, bias=0.0)
    ])

# MAE masks inside the model: the batch is collated without BootMAE's
# stacked masks (mmpretrain's SelfSupDataPreprocessor takes inputs and data
# samples only)
train_dataloader = dict(collate_fn=dict(_delete_=True, type='default_collate'))
