# BootMAE ViT-B/16 (docs/method.md sections 2-5): encoder, pixel decoder
# (512 wide, low-level context), feature decoder (the encoder's width,
# high-level context), losses. The decoders and the pixel head follow the
# built encoder (width, heads, patch grid, patch size): another ViT needs only
#   --cfg-options model.backbone.arch=l   (or deit-small, h, a dict ...)
model = dict(
    type='BootMAE',
    data_preprocessor=dict(
        # SelfSupDataPreprocessor that also moves the batch's masks (stacked
        # by mask_collate) in one copy
        type='BootMAEDataPreprocessor',
        mean=[127.5, 127.5, 127.5],  # (0.5, 0.5, 0.5) on [0, 1]
        std=[127.5, 127.5, 127.5],
        to_rgb=True,
        # asynchronous host-to-device copies of the pinned batches: the host
        # queues the step without waiting for the copy
        non_blocking=True),
    # with_cp=True: activation checkpointing (less memory, ViT-L/H)
    backbone=dict(
        type='BootMAEViT', arch='b', img_size=224, patch_size=16,
        with_cp=False),
    pixel_decoder=dict(type='BootMAEPixelDecoder', embed_dims=512, depth=2),
    pixel_head=dict(type='BootMAEPixelHead', norm_pix=True, weight_mask=True),
    feature_decoder=dict(type='BootMAEFeatureDecoder', depth=2),
    feature_head=dict(type='BootMAEFeatureHead', weight_mask=True),
    feature_weight=1.0,
    # must equal the masking transform's num_masking_patches
    num_masking_patches=147,
    # torch.compile the step's tensor part (True or a dict of options); worth
    # it on GPUs (compiles in about a minute), off by default
    compile=False)
