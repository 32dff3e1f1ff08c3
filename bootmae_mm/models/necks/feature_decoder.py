import torch
import torch.nn as nn
from mmpretrain.registry import MODELS

from .target_aware_decoder import TargetAwareDecoder


@MODELS.register_module()
class BootMAEFeatureDecoder(TargetAwareDecoder):
    """The feature decoder: width D (the encoder's), depth 2, context = the
    encoder's high-level tap; predicts one D-vector per patch
    (docs/method.md section 4).

    Args:
        in_dims (int): encoder width D; also the decoder and output width
            unless ``embed_dims`` / ``out_dims`` say otherwise.
        embed_dims (int, optional): decoder width. Defaults to ``in_dims``.
        out_dims (int, optional): predicted feature width (the target
            encoder's). Defaults to ``in_dims``.
        **kwargs: see :class:`TargetAwareDecoder`.
    """

    def __init__(self, in_dims: int, embed_dims: int = None,
                 out_dims: int = None, **kwargs):
        embed_dims = embed_dims or in_dims
        super().__init__(in_dims=in_dims, embed_dims=embed_dims, **kwargs)
        self.decoder_pred = nn.Linear(embed_dims, out_dims or in_dims)

    def forward(self, latent: torch.Tensor, context: torch.Tensor,
                mask: torch.Tensor) -> torch.Tensor:
        """Returns the predicted features of every patch, (B, N, out_dims)."""
        return self.decoder_pred(self.decode(latent, context, mask))[:, 1:]
