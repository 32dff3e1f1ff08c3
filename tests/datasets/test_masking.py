"""BootMAEMaskGenerator: exact counts, block structure, roll, seeding,
build-time errors and packing into DataSample.mask."""
import numpy as np
import pytest
import torch
from mmcv.transforms import Compose
from mmengine.runner import set_random_seed
from mmpretrain.registry import TRANSFORMS

import bootmae_mm  # noqa: F401  (registers the transforms)
from bootmae_mm.datasets.transforms import BootMAEMaskGenerator


def build(**kwargs):
    return TRANSFORMS.build(dict(type='BootMAEMaskGenerator', **kwargs))


def draw(gen, n):
    return np.stack([gen({})['mask'] for _ in range(n)])


def neighbour_pairs(mask):
    """Number of 4-neighbour pairs of masked patches."""
    return int((mask[1:] * mask[:-1]).sum() + (mask[:, 1:] *
                                                mask[:, :-1]).sum())


@pytest.mark.parametrize('img_size,patch_size,num,block,grid', [
    (224, 16, 147, 120, (14, 14)),
    (112, 16, 36, 30, (7, 7)),
    ((192, 256), 16, 144, 117, (12, 16)),
    (224, 14, 192, 156, (16, 16)),
])
def test_exact_count_every_sample(img_size, patch_size, num, block, grid):
    gen = build(img_size=img_size, patch_size=patch_size,
                num_masking_patches=num, num_block_masking_patches=block)
    masks = draw(gen, 300)
    assert masks.shape == (300, *grid)
    assert masks.dtype == np.int64
    assert set(np.unique(masks)) == {0, 1}
    assert (masks.reshape(300, -1).sum(1) == num).all()


def test_defaults_are_the_reference_setting():
    gen = BootMAEMaskGenerator()
    assert (gen.height, gen.width) == (14, 14)
    assert gen.num_masking_patches == 147
    assert gen.num_block_masking_patches == 120
    assert gen.block_generator.min_num_patches == 16
    assert gen.block_generator.max_num_patches == 60
    assert gen.random_roll


def test_block_step_is_exact_and_blocky():
    """Block step only (no fill, no roll): exactly the block count, far more
    masked neighbour pairs than a uniform random mask of the same size, and
    blocks reach every row and column (incl. the last ones)."""
    gen = build(num_masking_patches=120, random_roll=False)
    masks = draw(gen, 300)
    assert (masks.reshape(300, -1).sum(1) == 120).all()
    uniform = BootMAEMaskGenerator(num_masking_patches=120,
                                   num_block_masking_patches=0)
    block_pairs = np.mean([neighbour_pairs(m) for m in masks])
    uniform_pairs = np.mean([neighbour_pairs(m) for m in draw(uniform, 300)])
    # uniform: 364 pairs * 120*119/(196*195) = 136; blocks: ~210
    assert block_pairs > uniform_pairs + 40, (block_pairs, uniform_pairs)
    freq = masks.mean(0)
    assert (freq[-1] > 0.02).all() and (freq[:, -1] > 0.02).all()


def test_full_mask_keeps_block_structure():
    gen = BootMAEMaskGenerator()  # 120 in blocks, filled to 147, rolled
    uniform = BootMAEMaskGenerator(num_block_masking_patches=0)
    pairs = np.mean([neighbour_pairs(m) for m in draw(gen, 300)])
    uniform_pairs = np.mean([neighbour_pairs(m) for m in draw(uniform, 300)])
    # uniform: 364 * 147*146/(196*195) = 204.4
    assert abs(uniform_pairs - 204.4) < 3
    assert pairs > uniform_pairs + 20, (pairs, uniform_pairs)


def _fixed_block(gen, rows):
    block = np.zeros((gen.height, gen.width), dtype=np.int64)
    block[:rows] = 1
    gen.block_mask = lambda: block.copy()
    return block


def test_fill_is_uniform_outside_the_blocks():
    gen = BootMAEMaskGenerator(img_size=112, num_masking_patches=30,
                               num_block_masking_patches=14,
                               random_roll=False)
    block = _fixed_block(gen, rows=2)  # 14 patches of the 7 x 7 grid
    masks = draw(gen, 2000)
    assert (masks.reshape(2000, -1).sum(1) == 30).all()
    assert (masks[:, :2] == 1).all()  # block patches stay masked
    # the other 16 masked patches are spread uniformly over the 35 others
    freq = masks[:, 2:].mean(0)
    assert np.allclose(freq, 16 / 35, atol=0.06), freq
    assert block.sum() == 14


@pytest.mark.parametrize('num', [21, 30])
def test_roll_swaps_up_to_three_patches(num):
    """With the roll, 0..3 random block patches become visible and as many
    other patches are masked instead; all four shifts occur."""
    for roll in (False, True):
        gen = BootMAEMaskGenerator(img_size=112, num_masking_patches=num,
                                   num_block_masking_patches=21,
                                   random_roll=roll)
        block = _fixed_block(gen, rows=3)  # 21 patches
        masks = draw(gen, 400)
        assert (masks.reshape(400, -1).sum(1) == num).all()
        revealed = ((block == 1) & (masks == 0)).reshape(400, -1).sum(1)
        if not roll:
            assert (revealed == 0).all()
            if num == 21:
                assert (masks == block).all()
        else:
            assert set(revealed.tolist()) == {0, 1, 2, 3}
            # revealed block patches are picked at random, not always the
            # same ones
            assert ((block == 1) & (masks == 0)).any(0).sum() > 10


def test_reproducible_under_mmengine_seed():
    gen = BootMAEMaskGenerator()
    set_random_seed(123)
    first = draw(gen, 20)
    set_random_seed(123)
    again = draw(gen, 20)
    set_random_seed(124)
    other = draw(gen, 20)
    assert (first == again).all()
    assert not (first == other).all()


@pytest.mark.parametrize('num', [196, 250, 0, -5])
def test_bad_num_masking_patches_fails_at_build(num):
    with pytest.raises(ValueError) as err:
        build(num_masking_patches=num, num_block_masking_patches=0)
    msg = str(err.value)
    assert 'num_masking_patches' in msg and '14 x 14' in msg
    assert '196 patches' in msg


def test_other_bad_args_name_the_key():
    with pytest.raises(ValueError, match='num_block_masking_patches'):
        build(num_masking_patches=100, num_block_masking_patches=120)
    with pytest.raises(ValueError) as err:
        build(img_size=(224, 200), patch_size=16)
    assert 'img_size' in str(err.value) and 'patch_size' in str(err.value)
    assert '(224, 200)' in str(err.value)
    with pytest.raises(ValueError, match='patch_size'):
        build(patch_size=0)
    with pytest.raises(ValueError, match='min_aspect'):
        build(min_aspect=0.0)
    # a request that fits a larger grid fails on a smaller one
    with pytest.raises(ValueError, match='7 x 7'):
        build(img_size=112)


def test_packs_into_datasample_mask():
    pipeline = Compose([
        build(img_size=(192, 256), num_masking_patches=144,
              num_block_masking_patches=117),
        TRANSFORMS.build(dict(type='PackInputs')),
    ])
    img = np.zeros((192, 256, 3), dtype=np.uint8)
    packed = pipeline(dict(img=img, img_shape=img.shape[:2]))
    mask = packed['data_samples'].mask
    assert isinstance(mask, torch.Tensor)
    assert mask.shape == (12, 16)
    assert int(mask.sum()) == 144
    assert packed['inputs'].shape == (3, 192, 256)
