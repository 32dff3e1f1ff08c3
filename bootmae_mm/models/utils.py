"""Small helpers shared by the BootMAE encoder and decoders."""
from typing import Sequence, Tuple, Union

import torch
from mmpretrain.models.utils import build_2d_sincos_position_embedding

from ..config_errors import ConfigValueError


def sincos_pos_embed(patch_resolution: Union[int, Sequence[int]],
                     embed_dims: int) -> torch.Tensor:
    """Fixed 2-D sin-cos position embedding with an all-zero cls row,
    shape (1, 1 + H * W, embed_dims).

    For raster index ``k = r * W + c`` the first half of the channels follows
    the row ``r`` and the second half the column ``c`` (docs/method.md
    section 2).
    mmpretrain's helper puts the *first* grid axis it is given on the slow
    index, so it is called with ``(W, H)``; for square grids this is exactly
    mmpretrain's embedding.
    """
    if embed_dims % 4 != 0:
        raise ConfigValueError(
            'embed_dims', embed_dims, f'embed_dims={embed_dims}: the 2-D '
            'sin-cos position embedding needs a width divisible by 4.')
    if isinstance(patch_resolution, int):
        patch_resolution = (patch_resolution, patch_resolution)
    h, w = patch_resolution
    return build_2d_sincos_position_embedding((w, h), embed_dims,
                                              cls_token=True)


def mask_to_ids(mask: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Token orderings for a (B, N) boolean mask (True = masked).

    Returns:
        ``ids_shuffle``: visible positions first (ascending), then masked
        positions (ascending); ``ids_restore``: its inverse permutation.
    """
    ids_shuffle = torch.argsort(mask.to(torch.uint8), dim=1, stable=True)
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    return ids_shuffle, ids_restore


def gather_tokens(x: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """``x[b, ids[b]]`` for (B, N, C) tokens and (B, M) indices."""
    return torch.gather(x, 1, ids.unsqueeze(-1).expand(-1, -1, x.shape[-1]))
