# BootMAE ViT-H/14 pretraining with FSDP (mmengine's FlexibleRunner), 224 px
# images on a 16 x 16 patch grid, 192 of 256 patches (75 %) masked:
#   tools/dist_train.sh configs/bootmae_vit-h_800e_fsdp.py 16
# Recipe of the ViT-L config (BootMAE published no ViT-H run: the lr,
# schedule and EMA are the ViT-L ones), sharded as in
# configs/bootmae_vit-l_800e_fsdp.py (each 19.7 M-parameter encoder block is
# an FSDP unit). Activation checkpointing (with_cp) is on: it trades about
# one more encoder forward for the activation memory of the 32 blocks.
_base_ = './bootmae_vit-l_800e_fsdp.py'

img_size = 224
patch_size = 14
num_masking_patches = 192  # 75 % of 256
num_block_masking_patches = 157  # 120 / 147 of the masked patches, as ViT-B

# the decoders and the pixel head follow the encoder (1280 wide, 16 heads,
# 14 px patches on the 16 x 16 grid)
model = dict(
    backbone=dict(arch='h', img_size=img_size, patch_size=patch_size,
                  with_cp=True),
    num_masking_patches=num_masking_patches)

train_dataloader = dict(
    dataset=dict(
        dataset=dict(pipeline=[
            dict(type='RobustLoadImageFromFile'),
            dict(
                type='RandomResizedCrop',
                scale=img_size,
                crop_ratio_range=(0.2, 1.0),
                backend='pillow',
                interpolation='bicubic'),
            dict(type='RandomFlip', prob=0.5),
            dict(
                type='BootMAEMaskGenerator',
                img_size=img_size,
                patch_size=patch_size,
                num_masking_patches=num_masking_patches,
                num_block_masking_patches=num_block_masking_patches,
                random_roll=True),
            dict(type='PackInputs'),
        ])))
