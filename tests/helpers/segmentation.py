"""The segmentation config's segmentor shrunk to a tiny encoder (its tiny
BootMAE checkpoint: ``helpers.bootmae.save_bootmae_checkpoint`` with
``arch=ARCH``), and a generated ADE20K-layout folder."""
import os
import os.path as osp

import numpy as np
from mmengine.config import Config

from helpers.repo import REPO_ROOT

SEG_CONFIG = osp.join(REPO_ROOT, 'configs', 'segmentation',
                      'upernet_bootmae_vit-b_8xb2-160k_ade20k-512x512.py')
ARCH = dict(embed_dims=64, num_layers=4, num_heads=2, feedforward_channels=128)
PATCH = 8


def tiny_model_overrides(model, img_size=32, checkpoint=None):
    """Shrink the config's segmentor in place: 64-wide 4-block encoder
    (patch 8) tapped at every block, narrow heads, 64 px sliding window."""
    model.backbone.update(arch=ARCH, img_size=img_size, patch_size=PATCH,
                          out_indices=(0, 1, 2, 3))
    model.backbone.init_cfg.checkpoint = checkpoint
    model.data_preprocessor.size = (img_size, img_size)
    model.data_preprocessor.test_cfg.size = (img_size, img_size)
    model.neck.embed_dim = 64
    model.decode_head.update(in_channels=[64] * 4, channels=16)
    model.auxiliary_head.update(in_channels=64, channels=8)
    model.test_cfg.update(crop_size=(64, 64), stride=(43, 43))
    return model


def make_ade20k(root, n_train=4, n_val=2, size=64, seed=0):
    """ADE20K layout: images/{training,validation}/*.jpg and
    annotations/{training,validation}/*.png label maps (0 = ignore, 1..150;
    reduce_zero_label maps them to 255, 0..149)."""
    import cv2
    rng = np.random.default_rng(seed)
    for split, n in (('training', n_train), ('validation', n_val)):
        os.makedirs(osp.join(root, 'images', split))
        os.makedirs(osp.join(root, 'annotations', split))
        for i in range(n):
            label = np.zeros((size, size), np.uint8)
            label[:, size // 2:] = 1
            label[size // 2:, :] = 2
            label[:4] = 0
            img = rng.integers(0, 50, (size, size, 3)).astype(np.uint8)
            img[label == 2] += 150  # learnable: class 2 is bright
            name = f'ADE_{split}_{i:08d}'
            assert cv2.imwrite(osp.join(root, 'images', split,
                                        name + '.jpg'), img)
            assert cv2.imwrite(osp.join(root, 'annotations', split,
                                        name + '.png'), label)
    return str(root)


def tiny_seg_train_config(config, data_root, checkpoint, max_iters=4):
    """``config`` (a segmentation config's path) with the tiny segmentor
    (64 px inputs) started from ``checkpoint``, 64 px pipelines on the
    :func:`make_ade20k` folder ``data_root`` read in the main process,
    ``max_iters`` iterations with one validation and one checkpoint at the
    end; its GPU settings (AMP, SyncBN) left as they are."""
    cfg = Config.fromfile(config)
    tiny_model_overrides(cfg.model, img_size=64, checkpoint=checkpoint)
    cfg.optim_wrapper.paramwise_cfg.num_layers = ARCH['num_layers']
    crop = (64, 64)
    train_pipeline = [
        dict(type='LoadImageFromFile'),
        dict(type='LoadAnnotations', reduce_zero_label=True),
        dict(type='RandomResize', scale=(256, 64), ratio_range=(1.0, 1.5),
             keep_ratio=True),
        dict(type='RandomCrop', crop_size=crop, cat_max_ratio=0.75),
        dict(type='RandomFlip', prob=0.5),
        dict(type='PhotoMetricDistortion'),
        dict(type='PackSegInputs')]
    test_pipeline = [
        dict(type='LoadImageFromFile'),
        dict(type='Resize', scale=(256, 64), keep_ratio=True),
        dict(type='LoadAnnotations', reduce_zero_label=True),
        dict(type='PackSegInputs')]
    for key, pipeline in (('train_dataloader', train_pipeline),
                          ('val_dataloader', test_pipeline),
                          ('test_dataloader', test_pipeline)):
        cfg[key].update(num_workers=0, persistent_workers=False)
        cfg[key].dataset.update(data_root=data_root, pipeline=pipeline)
    cfg.train_cfg.update(max_iters=max_iters, val_interval=max_iters)
    half = max_iters // 2
    cfg.param_scheduler[0].end = half
    cfg.param_scheduler[1].update(begin=half, end=max_iters)
    cfg.default_hooks.checkpoint.interval = max_iters
    cfg.default_hooks.logger.interval = 1
    cfg.env_cfg.cudnn_benchmark = False
    return cfg
