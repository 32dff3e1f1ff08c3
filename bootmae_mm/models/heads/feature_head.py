import torch
import torch.nn.functional as F
from mmengine.model import BaseModule
from mmpretrain.registry import MODELS

from ..losses import patch_weights, weighted_masked_mse


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
