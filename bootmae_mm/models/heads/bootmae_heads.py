"""BootMAE's two heads with their loss formulas (docs/method.md section 5):
the normalized-pixel loss and the loss against the momentum target's
features, both a centre-weighted masked squared error."""
from typing import Tuple

import torch
import torch.nn.functional as F
from mmengine.model import BaseModule
from mmpretrain.registry import MODELS


def center_weighted_mask(mask: torch.Tensor) -> torch.Tensor:
    """Per-patch loss weights ``w = m + m * avgpool3x3(m)``.

    Zero padding, padded cells counted: a masked patch surrounded by masked
    patches weighs 2, an isolated one ``1 + 1/9``, a visible one 0.

    Args:
        mask: (B, h, w) patch mask, 1 = masked.

    Returns:
        (B, h * w) float weights.
    """
    m = mask.float().unsqueeze(1)
    neighbours = F.avg_pool2d(m, 3, stride=1, padding=1,
                              count_include_pad=True)
    return (m + m * neighbours).flatten(1)


def patch_weights(mask: torch.Tensor, center_weighted: bool) -> torch.Tensor:
    """(B, h * w) loss weights: :func:`center_weighted_mask` or ``w = m``."""
    return center_weighted_mask(mask) if center_weighted \
        else mask.flatten(1).float()


def weighted_masked_mse(pred: torch.Tensor, target: torch.Tensor,
                        weight: torch.Tensor,
                        mask: torch.Tensor) -> torch.Tensor:
    """``mean(w * (pred - target)^2) / mean(m)``.

    The mean runs over every patch (visible ones weigh 0) and every value
    inside a patch, so it equals the per-pixel (or per-channel) mean of the
    spec with ``w`` broadcast to the patch's values.

    Args:
        pred, target: (B, N, ...) per-patch values.
        weight: (B, N) patch weights (``mask`` or ``center_weighted_mask``).
        mask: (B, N) or (B, h, w) patch mask, 1 = masked.
    """
    per_patch = (pred.float() - target.float()).pow(2).flatten(2).mean(-1)
    return (per_patch * weight).mean() / mask.float().mean()


def patchify(imgs: torch.Tensor, patch_size: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, N, p * p, C) in raster patch order."""
    B, C, H, W = imgs.shape
    p = patch_size
    x = imgs.reshape(B, C, H // p, p, W // p, p)
    return x.permute(0, 2, 4, 3, 5, 1).reshape(B, -1, p * p, C)


def patch_mean_std(patches: torch.Tensor, eps: float = 1e-5
                   ) -> Tuple[torch.Tensor, torch.Tensor]:
    """Mean and ``sqrt(var + eps)`` (biased variance) of (B, N, p*p, C)
    patches over each patch's pixels, per channel: (B, N, 1, C) each."""
    mean = patches.mean(dim=2, keepdim=True)
    var = patches.var(dim=2, unbiased=False, keepdim=True)
    return mean, (var + eps).sqrt()


def normalize_per_patch(patches: torch.Tensor,
                        eps: float = 1e-5) -> torch.Tensor:
    """Normalize (B, N, p*p, C) patches per patch and per channel with
    :func:`patch_mean_std` (the normalized-pixel target)."""
    mean, std = patch_mean_std(patches, eps)
    return (patches - mean) / std


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


@MODELS.register_module()
class BootMAEFeatureHead(BaseModule):
    """Loss against the momentum encoder's features (docs/method.md section 5).

    Prediction and target both pass through a LayerNorm without affine
    parameters before the weighted squared error.

    Args:
        weight_mask (bool): centre-weighted masks instead of ``w = m``.
            Defaults to True.
        eps (float): LayerNorm epsilon. Defaults to 1e-6.
    """

    def __init__(self, weight_mask: bool = True, eps: float = 1e-6,
                 init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        self.weight_mask = weight_mask
        self.eps = eps

    def loss(self, pred: torch.Tensor, target: torch.Tensor,
             mask: torch.Tensor) -> torch.Tensor:
        """Args:
            pred, target: (B, N, D) per-patch features.
            mask: (B, h, w) patch mask, 1 = masked.
        """
        weight = patch_weights(mask, self.weight_mask)
        dims = pred.shape[-1:]
        return weighted_masked_mse(
            F.layer_norm(pred.float(), dims, eps=self.eps),
            F.layer_norm(target.float(), dims, eps=self.eps), weight, mask)
