# BootMAE ViT-B/16 (BOOTMAE.md sections 2-5): encoder, pixel decoder (512 wide,
# low-level context), feature decoder (768 wide, high-level context), losses.
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
    pixel_decoder=dict(
        type='BootMAEPixelDecoder',
        patch_resolution=14,
        patch_size=16,
        in_dims=768,
        embed_dims=512,
        depth=2,
        num_heads=12),
    pixel_head=dict(
        type='BootMAEPixelHead', patch_size=16, norm_pix=True,
        weight_mask=True),
    feature_decoder=dict(
        type='BootMAEFeatureDecoder',
        patch_resolution=14,
        in_dims=768,
        depth=2,
        num_heads=12),
    feature_head=dict(type='BootMAEFeatureHead', weight_mask=True),
    feature_weight=1.0,
    # must equal the masking transform's num_masking_patches
    num_masking_patches=147,
    # torch.compile the step's tensor part (True or a dict of options); worth
    # it on GPUs (compiles in about a minute), off by default
    compile=False)
