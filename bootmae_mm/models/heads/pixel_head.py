import torch
from mmengine.model import BaseModule
from mmpretrain.registry import MODELS

from ..losses import (
    normalize_per_patch,
    patch_weights,
    patchify,
    weighted_masked_mse,
)


@MODELS.register_module()
class BootMAEPixelHead(BaseModule):
    """Normalized-pixel reconstruction loss (docs/method.md section 5).

    Target: the input image normalized per patch and per channel. The
    prediction, a full image, is compared patch by patch.

    Args:
        patch_size (int): encoder patch size. Defaults to 16.
        norm_pix (bool): normalize the target per patch. Defaults to True.
        weight_mask (bool): centre-weighted masks (``w = m + m *
            avgpool3x3(m)``) instead of ``w = m``. Defaults to True.
    """

    def __init__(self, patch_size: int = 16, norm_pix: bool = True,
                 weight_mask: bool = True, init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        self.patch_size = patch_size
        self.norm_pix = norm_pix
        self.weight_mask = weight_mask

    def construct_target(self, imgs: torch.Tensor) -> torch.Tensor:
        """(B, N, p*p, C) target patches of the normalized input image."""
        target = patchify(imgs.float(), self.patch_size)
        return normalize_per_patch(target) if self.norm_pix else target

    def loss(self, pred: torch.Tensor, imgs: torch.Tensor,
             mask: torch.Tensor) -> torch.Tensor:
        """Args:
            pred: predicted image (B, C, H, W).
            imgs: input image (B, C, H, W).
            mask: (B, h, w) patch mask, 1 = masked.
        """
        weight = patch_weights(mask, self.weight_mask)
        return weighted_masked_mse(
            patchify(pred, self.patch_size), self.construct_target(imgs),
            weight, mask)
