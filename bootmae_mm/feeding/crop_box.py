"""Draw RandomResizedCrop boxes and flips, for crops applied on the device."""
import math
from typing import Callable, Sequence, Tuple

import numpy as np
from mmcv.transforms import BaseTransform
from mmpretrain.registry import TRANSFORMS

NUM_TRIES = 10  # as torchvision's RandomResizedCrop.get_params


def sample_crop_boxes(heights: Sequence[int], widths: Sequence[int],
                      scale: Sequence[float], ratio: Sequence[float],
                      uniform: Callable[[Tuple[int, ...]], np.ndarray]
                      ) -> np.ndarray:
    """RandomResizedCrop boxes for a batch of images, all at once.

    The distribution of torchvision's ``RandomResizedCrop.get_params`` (and
    mmpretrain's ``RandomResizedCrop``), vectorized: per image up to 10
    tries of an area fraction uniform in ``scale`` and a log aspect ratio
    (w / h) uniform in ``log(ratio)``; the first try whose rounded box fits
    the image is placed uniformly at random; if none fits, the largest
    central box with the ratio clamped to ``ratio``.

    Args:
        heights (Sequence[int]): Image heights.
        widths (Sequence[int]): Image widths.
        scale (Sequence[float]): (min, max) area fraction.
        ratio (Sequence[float]): (min, max) aspect ratio w / h.
        uniform (Callable): ``uniform(shape)`` returns float64 samples of
            U[0, 1) of that shape (the random source).

    Returns:
        np.ndarray: ``(N, 4)`` int64 boxes ``(top, left, height, width)``.
    """
    height = np.asarray(heights, dtype=np.int64)[:, None]
    width = np.asarray(widths, dtype=np.int64)[:, None]
    num = height.shape[0]
    draws = np.asarray(uniform((num, 4 * NUM_TRIES)), dtype=np.float64)
    u_area, u_ratio, u_top, u_left = np.split(draws, 4, axis=1)
    area = (height * width) * (scale[0] + (scale[1] - scale[0]) * u_area)
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    aspect = np.exp(log_lo + (log_hi - log_lo) * u_ratio)
    # np.rint rounds half to even, as Python's round in torchvision
    box_w = np.rint(np.sqrt(area * aspect)).astype(np.int64)
    box_h = np.rint(np.sqrt(area / aspect)).astype(np.int64)
    fits = (box_w > 0) & (box_w <= width) & (box_h > 0) & (box_h <= height)
    first = fits.argmax(axis=1)
    rows = np.arange(num)
    box_h, box_w = box_h[rows, first], box_w[rows, first]
    # uniform integer offsets in 0 .. H - h (inclusive), as torch.randint
    top = np.floor(u_top[rows, first] *
                   (height[:, 0] - box_h + 1)).astype(np.int64)
    left = np.floor(u_left[rows, first] *
                    (width[:, 0] - box_w + 1)).astype(np.int64)

    # no try fitted: the central crop of torchvision's fallback
    miss = ~fits.any(axis=1)
    if miss.any():
        h, w = height[miss, 0], width[miss, 0]
        in_ratio = w / h
        fb_w, fb_h = w.copy(), h.copy()
        narrow, wide = in_ratio < ratio[0], in_ratio > ratio[1]
        fb_h[narrow] = np.rint(w[narrow] / ratio[0]).astype(np.int64)
        fb_w[wide] = np.rint(h[wide] * ratio[1]).astype(np.int64)
        box_h[miss], box_w[miss] = fb_h, fb_w
        top[miss], left[miss] = (h - fb_h) // 2, (w - fb_w) // 2
    return np.stack([top, left, box_h, box_w], axis=1)


@TRANSFORMS.register_module()
class RandomResizedCropBox(BaseTransform):
    """Draw a RandomResizedCrop box and a horizontal flip, without touching
    the pixels.

    For the GPU decode path (``LoadImageBytes`` -> this ->
    ``BootMAEMaskGenerator`` -> ``PackInputs``), where
    :class:`~bootmae_mm.feeding.gpu_decode.GPUDecodeDataPreprocessor`
    crops, resizes and flips the whole batch on the device. Drawn here, in
    the data loader worker, the box and flip come from the sample's random
    state: with :class:`~bootmae_mm.datasets.SeededDataset` they depend on
    the sample's seed only, like the CPU pipeline's ``RandomResizedCrop``,
    so a resumed or prefetching run crops exactly as an uninterrupted one.
    Randomness: ``numpy.random``.

    **Required Keys:** ``ori_shape`` (``LoadImageBytes(read_shape=True)``)

    **Added Keys:** ``crop_box`` (``(top, left, height, width)`` ints, in
    the decoded image), ``flip`` (bool), ``flip_direction``
    (``'horizontal'`` or None). ``PackInputs`` must carry them:
    ``meta_keys=(..., 'crop_box', 'flip')``.

    Args:
        scale (Sequence[float]): Range of the crop's area relative to the
            image. Defaults to (0.2, 1.0).
        ratio (Sequence[float]): Range of the crop's aspect ratio (w / h).
            Defaults to (3 / 4, 4 / 3).
        flip_prob (float): Probability of a horizontal flip.
            Defaults to 0.5.
    """

    def __init__(self,
                 scale: Sequence[float] = (0.2, 1.0),
                 ratio: Sequence[float] = (3 / 4, 4 / 3),
                 flip_prob: float = 0.5) -> None:
        check_crop_args(type(self).__name__, scale, ratio, flip_prob)
        self.scale = tuple(float(s) for s in scale)
        self.ratio = tuple(float(r) for r in ratio)
        self.flip_prob = flip_prob

    def transform(self, results: dict) -> dict:
        if 'ori_shape' not in results:
            raise KeyError(f'{type(self).__name__} needs `ori_shape` (use '
                           'LoadImageBytes(read_shape=True) before it), '
                           f'missing for {results.get("img_path")}')
        height, width = results['ori_shape']
        box = sample_crop_boxes([height], [width], self.scale, self.ratio,
                                np.random.random_sample)[0]
        flip = bool(np.random.random_sample() < self.flip_prob)
        results['crop_box'] = tuple(int(v) for v in box)
        results['flip'] = flip
        results['flip_direction'] = 'horizontal' if flip else None
        return results

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(scale={self.scale}, '
                f'ratio={self.ratio}, flip_prob={self.flip_prob})')


def check_crop_args(owner: str, scale: Sequence[float],
                    ratio: Sequence[float], flip_prob: float) -> None:
    """Raise a ValueError naming ``owner`` and the bad argument."""
    if len(scale) != 2 or not 0 < scale[0] <= scale[1]:
        raise ValueError(f'{owner}: `scale` must be (min, max) with '
                         f'0 < min <= max, got {scale}')
    if len(ratio) != 2 or not 0 < ratio[0] <= ratio[1]:
        raise ValueError(f'{owner}: `ratio` must be (min, max) with '
                         f'0 < min <= max, got {ratio}')
    if not 0 <= flip_prob <= 1:
        raise ValueError(f'{owner}: `flip_prob` must be in [0, 1], got '
                         f'{flip_prob}')
