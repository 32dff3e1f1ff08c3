# BootMAE ViT-B/16 pretraining on a folder of one's own images, no labels
# (README "Pretraining on your own images"). Point it at the folder:
#   python tools/train.py configs/bootmae_vit-b_800e_custom-folder.py \
#       --cfg-options train_dataloader.dataset.dataset.data_root=PATH
# (or set `data_root` below in a copy, or in a config that inherits this one
# and sets train_dataloader.dataset.dataset.data_root). Every image under the
# folder is read, at any depth (my_images/*.jpg or my_images/a/b/*.png):
# jpg, jpeg, png, bmp, webp, tif / tiff, ppm, pgm; any size, grey, RGBA,
# palette, CMYK and 16-bit pictures become 8-bit RGB. The recipe is
# configs/bootmae_vit-b_800e.py's (800 epochs, 16 GPUs x 128): set
# train_cfg.max_epochs and the batch for a smaller folder.
_base_ = './bootmae_vit-b_800e.py'

data_root = 'data/my_images/'

train_dataloader = dict(
    dataset=dict(
        # SeededDataset (exact resume) around mmpretrain's folder dataset
        dataset=dict(
            _delete_=True,
            type='CustomDataset',
            data_root=data_root,
            with_label=False,
            extensions=('.jpg', '.jpeg', '.png', '.bmp', '.webp', '.tif',
                        '.tiff', '.ppm', '.pgm'),
            pipeline={{_base_.train_pipeline}})))
