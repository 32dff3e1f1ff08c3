# UperNet on the BootMAE ViT-B encoder (docs/method.md section 8): relative
# position bias per block (zero-initialized), learnable layer scales (1.0),
# a trainable position embedding (the checkpoint's sin-cos table resized to
# 32 x 32), drop path 0.1, taps 3/5/7/11 turned into a 4-level pyramid
# (x4, x2, x1, x0.5) by mmseg's Feature2Pyramid.
norm_cfg = dict(type='SyncBN', requires_grad=True)
data_preprocessor = dict(
    type='SegDataPreProcessor',
    mean=[127.5, 127.5, 127.5],  # the pretraining normalization
    std=[127.5, 127.5, 127.5],
    bgr_to_rgb=True,
    pad_val=0,
    seg_pad_val=255)
model = dict(
    type='EncoderDecoder',
    data_preprocessor=data_preprocessor,
    backbone=dict(
        type='BootMAEViTSeg',
        arch='b',
        img_size=512,
        patch_size=16,
        out_indices=(3, 5, 7, 11),
        drop_path_rate=0.1,
        layer_scale_init_value=1.0,  # the reference's init_values=1
        # set with --cfg-options model.backbone.init_cfg.checkpoint=PATH;
        # source='target' takes the momentum target encoder instead
        init_cfg=dict(type='BootMAEPretrained', checkpoint=None,
                      source='online')),
    neck=dict(type='Feature2Pyramid', embed_dim=768, rescales=[4, 2, 1, 0.5],
              norm_cfg=norm_cfg),
    decode_head=dict(
        type='UPerHead',
        in_channels=[768, 768, 768, 768],
        in_index=[0, 1, 2, 3],
        pool_scales=(1, 2, 3, 6),
        channels=768,
        dropout_ratio=0.1,
        num_classes=150,
        norm_cfg=norm_cfg,
        align_corners=False,
        loss_decode=dict(
            type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)),
    auxiliary_head=dict(
        type='FCNHead',
        in_channels=768,
        in_index=2,
        channels=256,
        num_convs=1,
        concat_input=False,
        dropout_ratio=0.1,
        num_classes=150,
        norm_cfg=norm_cfg,
        align_corners=False,
        loss_decode=dict(
            type='CrossEntropyLoss', use_sigmoid=False, loss_weight=0.4)),
    train_cfg=dict(),
    test_cfg=dict(mode='slide', crop_size=(512, 512), stride=(341, 341)))
