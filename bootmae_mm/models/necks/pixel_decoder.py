import torch
import torch.nn as nn
from mmpretrain.registry import MODELS

from .target_aware_decoder import TargetAwareDecoder


@MODELS.register_module()
class BootMAEPixelDecoder(TargetAwareDecoder):
    """The pixel decoder: width 512, depth 2, context = the encoder's
    low-level tap; predicts the whole image with a transposed convolution
    (docs/method.md section 4).

    Args:
        patch_size (int): encoder patch size. Defaults to 16.
        in_channels (int): image channels. Defaults to 3.
        embed_dims (int): decoder width. Defaults to 512.
        **kwargs: see :class:`TargetAwareDecoder`.
    """

    def __init__(self, patch_size: int = 16, in_channels: int = 3,
                 embed_dims: int = 512, **kwargs):
        super().__init__(embed_dims=embed_dims, **kwargs)
        self.decoder_pred = nn.ConvTranspose2d(
            embed_dims, in_channels, kernel_size=patch_size, stride=patch_size)

    def forward(self, latent: torch.Tensor, context: torch.Tensor,
                mask: torch.Tensor) -> torch.Tensor:
        """Returns the predicted image, (B, C, H, W)."""
        x = self.decode(latent, context, mask)[:, 1:]
        h, w = self.patch_resolution
        x = x.transpose(1, 2).reshape(x.shape[0], -1, h, w)
        return self.decoder_pred(x)
