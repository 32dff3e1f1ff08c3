"""Masks collated into one tensor that the loader pins, moved by the data
preprocessor in one copy (CPU pipeline and GPU decode path)."""
import numpy as np
import pytest
import torch
from mmengine.registry import FUNCTIONS
from mmpretrain.registry import DATASETS, MODELS
from torch.utils.data._utils.pin_memory import pin_memory

import bootmae_mm  # noqa: F401
from helpers.image_folder import make_image_folder

GRID = (4, 4)  # 32 px images, 8 px patches


def _dataset(root, gpu_path=False):
    mask = dict(type='BootMAEMaskGenerator', img_size=32, patch_size=8,
                num_masking_patches=12, num_block_masking_patches=8,
                min_num_patches=2, max_num_patches=None)
    if gpu_path:
        pipeline = [dict(type='LoadImageBytes'),
                    dict(type='RandomResizedCropBox'), mask,
                    dict(type='PackInputs',
                         meta_keys=('img_path', 'crop_box', 'flip'))]
    else:
        pipeline = [dict(type='LoadImageFromFile'),
                    dict(type='RandomResizedCrop', scale=32,
                         crop_ratio_range=(0.4, 1.0), backend='pillow',
                         interpolation='bicubic'),
                    dict(type='RandomFlip', prob=0.5), mask,
                    dict(type='PackInputs')]
    return DATASETS.build(dict(type='CustomDataset', data_root=str(root),
                               with_label=False, pipeline=pipeline))


@pytest.fixture(scope='module')
def folder(tmp_path_factory):
    return make_image_folder(tmp_path_factory.mktemp('img'), per_class=3,
                             ext='jpg')


def _samples(dataset, seed=0):
    np.random.seed(seed)
    return [dataset[i] for i in range(len(dataset))]


def test_mask_collate_stacks_masks_into_one_tensor(folder):
    collate = FUNCTIONS.get('mask_collate')
    samples = _samples(_dataset(folder))
    expected = torch.stack([s['data_samples'].mask for s in samples])
    batch = collate(samples)
    assert isinstance(batch['masks'], torch.Tensor)
    assert batch['masks'].shape == (6, ) + GRID
    assert torch.equal(batch['masks'], expected)
    assert all('mask' not in s for s in batch['data_samples'])
    assert batch['inputs'].shape == (6, 3, 32, 32)  # default_collate
    # the GPU decode path: encoded files of different lengths in a list
    samples = _samples(_dataset(folder, gpu_path=True))
    batch = collate(samples, inputs='list')
    assert isinstance(batch['inputs'], list) and len(batch['inputs']) == 6
    assert batch['masks'].shape == (6, ) + GRID
    with pytest.raises(ValueError, match="'stack' or 'list'"):
        collate(samples, inputs='tuple')


def test_loader_pins_the_collated_masks(folder, monkeypatch):
    """The DataLoader's pin_memory step (torch's ``pin_memory`` function,
    what ``pin_memory=True`` runs on each batch) reaches the one masks
    tensor; with masks inside data samples it reaches none of them."""
    collate = FUNCTIONS.get('mask_collate')
    samples = _samples(_dataset(folder))
    pinned = []
    if torch.cuda.is_available():
        batch = pin_memory(collate(samples))
        assert batch['masks'].is_pinned()
        return
    # CPU-only torch cannot pin: record what the pin step is handed
    monkeypatch.setattr(torch.Tensor, 'pin_memory',
                        lambda self, *a: pinned.append(self) or self)
    batch = collate(samples)
    masks = batch['masks']
    out = pin_memory(batch)
    assert any(t is masks for t in pinned)
    assert out['masks'] is masks
    # default_collate leaves the masks inside the samples: never pinned
    pinned.clear()
    default = FUNCTIONS.get('default_collate')(_samples(_dataset(folder)))
    pin_memory(default)
    assert not any(t.shape[-2:] == GRID for t in pinned)


def _count_mask_copies(monkeypatch):
    """Count ``Tensor.to`` calls on mask-shaped tensors."""
    calls = []
    real_to = torch.Tensor.to

    def to(self, *args, **kwargs):
        if self.shape[-2:] == GRID:
            calls.append(tuple(self.shape))
        return real_to(self, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, 'to', to)
    return calls


def test_cpu_pipeline_preprocessor_one_mask_copy(folder, monkeypatch):
    """BootMAEDataPreprocessor on a mask_collate batch: the output of
    mmpretrain's SelfSupDataPreprocessor on the same samples, with one copy
    of the masks instead of one per sample."""
    cfg = dict(mean=[127.5] * 3, std=[127.5] * 3, to_rgb=True,
               non_blocking=True)
    ours = MODELS.build(dict(type='BootMAEDataPreprocessor', **cfg))
    theirs = MODELS.build(dict(type='SelfSupDataPreprocessor', **cfg))
    dataset = _dataset(folder)
    ref = theirs(FUNCTIONS.get('default_collate')(_samples(dataset)))
    calls = _count_mask_copies(monkeypatch)
    out = ours(FUNCTIONS.get('mask_collate')(_samples(dataset)))
    assert calls == [(6, ) + GRID]
    assert torch.equal(out['inputs'], ref['inputs'])
    for got, want in zip(out['data_samples'], ref['data_samples']):
        assert torch.equal(got.mask, want.mask)
    # the old way: one copy per sample
    calls.clear()
    theirs(FUNCTIONS.get('default_collate')(_samples(dataset)))
    assert len(calls) == 6


def test_gpu_decode_preprocessor_one_mask_copy(folder, monkeypatch):
    pre = MODELS.build(dict(type='GPUDecodeDataPreprocessor', size=32,
                            non_blocking=True))
    samples = _samples(_dataset(folder, gpu_path=True))
    expected = [s['data_samples'].mask.clone() for s in samples]
    calls = _count_mask_copies(monkeypatch)
    out = pre(FUNCTIONS.get('mask_collate')(samples, inputs='list'))
    assert calls == [(6, ) + GRID]
    assert out['inputs'].shape == (6, 3, 32, 32)
    for got, want in zip(out['data_samples'], expected):
        assert torch.equal(got.mask, want)
