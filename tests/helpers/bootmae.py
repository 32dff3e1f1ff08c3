"""A tiny BootMAE (64 wide, 3 blocks, 32 px images, 4 x 4 patch grid), its
masks and in-memory masked data, and the Runner arguments for a tiny BootMAE
run, shared by the core tests."""
import copy
import uuid
from pathlib import Path

import torch
from mmpretrain.structures import DataSample
from torch.utils.data import Dataset

GRID = 4
NUM_MASKED = 12
TINY_ARCH = dict(embed_dims=64, num_layers=3, num_heads=2,
                 feedforward_channels=128)

TINY_BOOTMAE = dict(
    type='BootMAE',
    data_preprocessor=dict(type='SelfSupDataPreprocessor',
                           mean=[127.5] * 3, std=[127.5] * 3, to_rgb=True),
    backbone=dict(type='BootMAEViT', arch=TINY_ARCH, img_size=32,
                  patch_size=8),
    pixel_decoder=dict(type='BootMAEPixelDecoder', patch_resolution=GRID,
                       patch_size=8, in_dims=64, embed_dims=32, depth=2,
                       num_heads=2),
    pixel_head=dict(type='BootMAEPixelHead', patch_size=8),
    feature_decoder=dict(type='BootMAEFeatureDecoder', patch_resolution=GRID,
                         in_dims=64, depth=2, num_heads=2),
    feature_head=dict(type='BootMAEFeatureHead'),
    num_masking_patches=NUM_MASKED)


def tiny_bootmae_cfg(**overrides):
    """The tiny BootMAE model config with ``overrides``."""
    cfg = copy.deepcopy(TINY_BOOTMAE)
    cfg.update(overrides)
    return cfg


def save_bootmae_checkpoint(path, arch=TINY_ARCH, seed=0, moved='online'):
    """A freshly built tiny BootMAE (encoder ``arch``) saved like a
    pretraining run does; returns the model. So that the online encoder
    and the momentum target differ, the ``moved`` one gets 0.1 N(0, 1)
    noise: ``'online'`` its parameters (the sin-cos ``pos_embed``
    included), ``'target'`` the target's buffers."""
    from mmpretrain.registry import MODELS
    torch.manual_seed(seed)
    cfg = tiny_bootmae_cfg()
    cfg['backbone'] = dict(cfg['backbone'], arch=arch)
    cfg['pixel_decoder'] = dict(cfg['pixel_decoder'],
                                in_dims=arch['embed_dims'])
    cfg['feature_decoder'] = dict(cfg['feature_decoder'],
                                  in_dims=arch['embed_dims'])
    model = MODELS.build(cfg)
    model.init_weights()
    tensors = dict(online=model.backbone.parameters,
                   target=model.target_encoder.buffers)[moved]
    with torch.no_grad():
        for t in tensors():
            t.add_(torch.randn_like(t) * 0.1)
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, str(path))
    return model


def random_patch_mask(generator, grid=GRID, num_masked=NUM_MASKED):
    """A (grid, grid) 0/1 mask with ``num_masked`` random patches set."""
    mask = torch.zeros(grid * grid)
    mask[torch.randperm(grid * grid, generator=generator)[:num_masked]] = 1
    return mask.view(grid, grid)


def data_samples_with_masks(masks):
    """One mmpretrain ``DataSample`` per mask, holding it."""
    samples = []
    for mask in masks:
        sample = DataSample()
        sample.set_mask(mask)
        samples.append(sample)
    return samples


class FixedMaskDataset(Dataset):
    """``n`` smooth random uint8 images (bilinearly upsampled 4 x 4 noise, so
    that there is something to learn), each with its own fixed mask."""

    def __init__(self, n=8, size=32, seed=0):
        g = torch.Generator().manual_seed(seed)
        coarse = torch.rand(n, 3, 4, 4, generator=g) * 255
        self.images = torch.nn.functional.interpolate(
            coarse, size=(size, size), mode='bilinear',
            align_corners=False).round().to(torch.uint8)
        self.masks = [random_patch_mask(g) for _ in range(n)]
        self.metainfo = {}

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return dict(inputs=self.images[i],
                    data_samples=data_samples_with_masks([self.masks[i]])[0])


def tiny_bootmae_runner_kwargs(work_dir, max_epochs=2, batch_size=4,
                               custom_hooks=None, accumulative_counts=1,
                               shuffle=False, **model_overrides):
    """Runner kwargs for a tiny BootMAE run on FixedMaskDataset."""
    return dict(
        model=tiny_bootmae_cfg(**model_overrides),
        work_dir=str(work_dir),
        train_dataloader=dict(
            dataset=FixedMaskDataset(), batch_size=batch_size,
            num_workers=0, collate_fn=dict(type='default_collate'),
            sampler=dict(type='DefaultSampler', shuffle=shuffle)),
        train_cfg=dict(by_epoch=True, max_epochs=max_epochs),
        optim_wrapper=dict(optimizer=dict(type='AdamW', lr=1e-3),
                           accumulative_counts=accumulative_counts),
        custom_hooks=custom_hooks if custom_hooks is not None else [
            dict(type='MomentumTargetHook', start=0.9, base=0.99,
                 ramp_epochs=2),
            dict(type='FeatureWeightRampHook')],
        default_hooks=dict(logger=dict(type='LoggerHook', interval=1),
                           checkpoint=dict(type='CheckpointHook',
                                           interval=1)),
        default_scope='mmpretrain',
        # unique: runners built in the same second would otherwise share
        # mmengine's MessageHub (named after a timestamp) and its history
        experiment_name=f'{Path(work_dir).name}_{uuid.uuid4().hex[:8]}',
        randomness=dict(seed=0),
        log_level='WARNING')
