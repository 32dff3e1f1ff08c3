"""A pretraining config of ours (the production one or the custom-folder
one) shrunk to a tiny BootMAE on 32 px pictures for one epoch, its GPU
settings (AMP, pinned memory, the prefetching loop) left as they are."""
import os.path as osp

from helpers.repo import REPO_ROOT

PRETRAIN_CONFIG = osp.join(REPO_ROOT, 'configs', 'bootmae_vit-b_800e.py')
FOLDER_CONFIG = osp.join(REPO_ROOT, 'configs',
                         'bootmae_vit-b_800e_custom-folder.py')

#: the tiny model (32 px, 4 x 4 patch grid, a 2-block 32-wide encoder) and
#: its training pipeline, over any of our pretraining configs; also the
#: core of ``helpers.demo_pretrain``'s shrunk demo config (no braces: it
#: goes through ``str.format`` with the text around it)
TINY_MODEL_AND_PIPELINE = '''
img_size = 32
model = dict(
    backbone=dict(
        arch=dict(_delete_=True, embed_dims=32, num_layers=2, num_heads=2,
                  feedforward_channels=64),
        img_size=img_size, patch_size=8),
    # the decoders' input width, heads and grid follow the encoder
    pixel_decoder=dict(embed_dims=32, depth=1),
    feature_decoder=dict(depth=1),
    num_masking_patches=12)
train_pipeline = [
    dict(type='RobustLoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=img_size, crop_ratio_range=(0.4, 1.),
         backend='pillow', interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5),
    dict(type='BootMAEMaskGenerator', img_size=img_size, patch_size=8,
         num_masking_patches=12, num_block_masking_patches=8,
         min_num_patches=2, max_num_patches=None, random_roll=True),
    dict(type='PackInputs'),
]
'''

_TINY = '''
_base_ = [{base!r}]''' + TINY_MODEL_AND_PIPELINE + '''train_dataloader = dict(
    batch_size={batch_size}, num_workers=1,
    dataset=dict(dataset=dict(pipeline=train_pipeline{dataset_extra})))
train_cfg = dict(max_epochs=1)
default_hooks = dict(logger=dict(interval=1))
# 'Iter(train) [i/n]' lines, as helpers.demo_pretrain.run_train_tool reads
log_processor = dict(by_epoch=False)
'''


def write_tiny_pretrain_config(path, base=PRETRAIN_CONFIG, batch_size=4,
                               classes=None):
    """Write the shrunk ``base`` to ``path`` and return it; ``classes``
    (for the ImageNet dataset of the production config) names the class
    folders of a small ImageNet-layout folder. The data root is left to
    ``--cfg-options train_dataloader.dataset.dataset.data_root=...``."""
    extra = f', metainfo=dict(classes={tuple(classes)!r})' if classes else ''
    with open(path, 'w') as f:
        f.write(_TINY.format(base=str(base), batch_size=batch_size,
                             dataset_extra=extra))
    return str(path)
