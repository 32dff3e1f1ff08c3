"""BootMAE mask generation: BEiT block-wise masking, then a random fill to an
exact count (``docs/method.md`` section 3)."""
from typing import Optional, Sequence, Tuple, Union

import numpy as np
from mmcv.transforms import BaseTransform
from mmpretrain.datasets.transforms import BEiTMaskGenerator
from mmpretrain.registry import TRANSFORMS

from ...config_errors import ConfigValueError


def _pair(value: Union[int, Sequence[int]], name: str) -> Tuple[int, int]:
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or not all(
            isinstance(v, (int, np.integer)) and v > 0 for v in pair):
        raise ValueError(f'`{name}` must be a positive int or a pair of '
                         f'positive ints, got {value!r}')
    return int(pair[0]), int(pair[1])


@TRANSFORMS.register_module()
class BootMAEMaskGenerator(BaseTransform):
    """Generate the BootMAE patch mask: exactly ``num_masking_patches`` masked
    patches, most of them in BEiT-style blocks.

    **Added Keys**:

    - mask (np.ndarray): ``(H, W)`` int64 array over the patch grid, 1 =
      masked, with exactly ``num_masking_patches`` ones. ``PackInputs``
      carries it as ``DataSample.mask`` (a tensor of shape ``(H, W)``).

    The grid is ``img_size // patch_size`` (pass the backbone's values), so
    it follows the image and patch size. Generation, as in the reference:

    1. BEiT block-wise masking (mmpretrain's :class:`BEiTMaskGenerator`) marks
       exactly ``num_block_masking_patches`` patches with rectangular blocks
       of ``min_num_patches`` to ``max_num_patches`` patches and aspect ratio
       in ``[min_aspect, max_aspect]``.
    2. The patches are ordered: the unmarked ones first in random order, then
       the block-marked ones in random order. The first
       ``num_patches - num_masking_patches`` of that order stay visible, the
       rest are masked; i.e. the masked set is filled up, uniformly at
       random among the unmarked patches, to exactly ``num_masking_patches``.
    3. With ``random_roll``, the order is first rolled by ``r`` positions,
       ``r`` uniform in ``0..3``: ``r`` random block-marked patches wrap round
       to the front and become visible, and ``r`` patches that would have
       been visible are masked instead. The count is unchanged. The reference
       draws ``r`` once per batch; a transform sees one sample, so ``r`` is
       drawn per sample here (same distribution for every sample).

    mmpretrain's block step draws block offsets with an exclusive upper
    bound, so its blocks never touch the last row or column. It is therefore
    run on a grid one patch larger in each direction and cropped, which gives
    the reference's offsets (blocks spanning the whole grid height or width,
    which the reference redraws, then become possible; they are rare).

    Randomness comes from ``numpy.random`` (as in mmpretrain), which
    mmengine seeds per run and per dataloader worker, so a run with
    ``randomness=dict(seed=...)`` draws the same masks.

    Args:
        img_size (int | Sequence[int]): Input image size ``s`` or ``(h, w)``.
            Defaults to 224.
        patch_size (int): Patch size of the backbone. ``img_size`` must be
            divisible by it. Defaults to 16.
        num_masking_patches (int): Number of masked patches per sample, in
            ``1 .. num_patches - 1``. Defaults to 147 (75% of 14 x 14).
        num_block_masking_patches (int): Number of patches masked block-wise
            before the random fill, in ``0 .. num_masking_patches``
            (0 = purely random masking). Defaults to 120.
        min_num_patches (int): Minimum patches per block. Defaults to 16.
        max_num_patches (int, optional): Maximum patches per block; None
            means no cap other than ``num_block_masking_patches`` (BEiT's
            default). Defaults to 60, as in the reference.
        min_aspect (float): Minimum block aspect ratio. Defaults to 0.3.
        max_aspect (float, optional): Maximum block aspect ratio. Defaults to
            None, meaning ``1 / min_aspect``.
        random_roll (bool): Roll the patch order by a random 0..3 positions
            (step 3 above). Defaults to True, as in the reference.
    """

    def __init__(self,
                 img_size: Union[int, Sequence[int]] = 224,
                 patch_size: int = 16,
                 num_masking_patches: int = 147,
                 num_block_masking_patches: int = 120,
                 min_num_patches: int = 16,
                 max_num_patches: Optional[int] = 60,
                 min_aspect: float = 0.3,
                 max_aspect: Optional[float] = None,
                 random_roll: bool = True) -> None:
        img_h, img_w = _pair(img_size, 'img_size')
        if not isinstance(patch_size, (int, np.integer)) or patch_size <= 0:
            raise ValueError(
                f'`patch_size` must be a positive int, got {patch_size!r}')
        if img_h % patch_size or img_w % patch_size:
            raise ValueError(
                f'`img_size` {(img_h, img_w)} is not divisible by '
                f'`patch_size` {patch_size}')
        self.img_size = (img_h, img_w)
        self.patch_size = int(patch_size)
        self.height, self.width = img_h // patch_size, img_w // patch_size
        self.num_patches = self.height * self.width
        grid = (f'the {self.height} x {self.width} patch grid '
                f'({self.num_patches} patches) of img_size '
                f'{self.img_size} / patch_size {self.patch_size}')

        if not 0 < num_masking_patches < self.num_patches:
            raise ConfigValueError(
                'num_masking_patches', num_masking_patches,
                f'`num_masking_patches`={num_masking_patches} must be in '
                f'1 .. {self.num_patches - 1} for {grid}; at least one '
                'patch must stay visible')
        if not 0 <= num_block_masking_patches <= num_masking_patches:
            raise ConfigValueError(
                'num_block_masking_patches', num_block_masking_patches,
                f'`num_block_masking_patches`={num_block_masking_patches} '
                f'must be in 0 .. num_masking_patches={num_masking_patches} '
                f'for {grid}')
        if min_num_patches < 1:
            raise ValueError(
                f'`min_num_patches` must be >= 1, got {min_num_patches}')
        if max_num_patches is not None and max_num_patches < 1:
            raise ValueError(
                f'`max_num_patches` must be >= 1, got {max_num_patches}')
        if not min_aspect > 0 or (max_aspect is not None
                                  and max_aspect < min_aspect):
            raise ValueError(f'need 0 < `min_aspect` <= `max_aspect`, got '
                             f'{min_aspect} and {max_aspect}')
        self.num_masking_patches = int(num_masking_patches)
        self.num_block_masking_patches = int(num_block_masking_patches)
        self.random_roll = random_roll

        # Grid one larger in each direction: see the class docstring.
        self.block_generator = BEiTMaskGenerator(
            input_size=(self.height + 1, self.width + 1),
            num_masking_patches=self.num_block_masking_patches,
            min_num_patches=min_num_patches,
            max_num_patches=max_num_patches,
            min_aspect=min_aspect,
            max_aspect=max_aspect)

    def block_mask(self) -> np.ndarray:
        """Exactly ``num_block_masking_patches`` block-masked patches."""
        if self.num_block_masking_patches == 0:
            return np.zeros((self.height, self.width), dtype=np.int64)
        mask = self.block_generator.transform({})['mask']
        return mask[:self.height, :self.width].astype(np.int64)

    def transform(self, results: dict) -> dict:
        """Add ``mask`` (1 = masked) to ``results``."""
        block = self.block_mask().reshape(-1)
        # Unmarked patches first, then block-marked ones, each in random
        # order (the reference's argsort of ``mask - uniform noise``).
        order = np.argsort(block - np.random.rand(self.num_patches))
        if self.random_roll:
            order = np.roll(order, np.random.randint(0, 4))
        mask = np.ones(self.num_patches, dtype=np.int64)
        mask[order[:self.num_patches - self.num_masking_patches]] = 0
        results['mask'] = mask.reshape(self.height, self.width)
        return results

    def __repr__(self) -> str:
        block = self.block_generator
        return (f'{self.__class__.__name__}(img_size={self.img_size}, '
                f'patch_size={self.patch_size}, '
                f'grid=({self.height}, {self.width}), '
                f'num_masking_patches={self.num_masking_patches}, '
                f'num_block_masking_patches='
                f'{self.num_block_masking_patches}, '
                f'min_num_patches={block.min_num_patches}, '
                f'max_num_patches={block.max_num_patches}, '
                f'log_aspect_ratio={block.log_aspect_ratio}, '
                f'random_roll={self.random_roll})')
