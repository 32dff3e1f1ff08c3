"""Small helpers shared by the BootMAE algorithm, encoder and decoders."""
import copy
from typing import Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from mmpretrain.models.utils import build_2d_sincos_position_embedding
from mmpretrain.registry import MODELS

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


def visible_ids(mask: torch.Tensor,
                num_visible: Optional[int] = None) -> torch.Tensor:
    """The visible patch indices (B, V), ascending, of a (B, h, w) or
    (B, N) patch mask, 1 = masked; every image has ``num_visible`` of them
    (when None: read back from the first image's mask)."""
    mask = mask.flatten(1).bool()
    if num_visible is None:
        num_visible = int((~mask[0]).sum())
    return mask_to_ids(mask)[0][:, :num_visible]


def gather_tokens(x: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """``x[b, ids[b]]`` for (B, N, C) tokens and (B, M) indices."""
    return torch.gather(x, 1, ids.unsqueeze(-1).expand(-1, -1, x.shape[-1]))


#: the arguments that a decoder or head takes from the built encoder, and
#: what the encoder fixes (for the error that refuses another value)
_FROM_ENCODER = dict(in_dims='its width is', context_dims='its taps are',
                     patch_resolution='its patch grid is',
                     patch_size='its patch size is',
                     out_dims='the target features are')


def _pair(value):
    return (value, value) if isinstance(value, int) else tuple(value)


def build_from_encoder(cfg: dict, key: str, fixed: dict,
                       defaults: Optional[dict] = None) -> nn.Module:
    """Build a decoder or head from ``cfg`` with the encoder's sizes.

    Args:
        cfg (dict): the config, e.g. ``model.pixel_decoder``.
        key (str): its config key, named in errors.
        fixed (dict): values the encoder fixes (:data:`_FROM_ENCODER`); an
            explicit other value is refused.
        defaults (dict, optional): values taken from the encoder unless
            the config gives one (``num_heads``, ``embed_dims``).
    """
    for name, value in fixed.items():
        given = cfg.get(name)
        if given is not None and _pair(given) != _pair(value):
            raise ValueError(
                f'{key}.{name}={given!r} does not fit the encoder '
                f'({_FROM_ENCODER[name]} {value!r}, model.backbone); leave '
                f'it out to follow the encoder.')
    try:
        return MODELS.build(copy.deepcopy(cfg),
                            default_args=dict(defaults or {}, **fixed))
    except ConfigValueError as e:
        if e.key != 'num_heads':
            raise
        raise ConfigValueError(e.key, e.value, f'{key}.{e}') from e


def freeze_as_buffers(module: nn.Module) -> nn.Module:
    """Turn every parameter of ``module`` into a persistent buffer: it stays
    in the state dict (and so in checkpoints), moves with ``.to()``, takes
    no gradient and is never handed to an optimizer."""
    for m in module.modules():
        for name, param in list(m._parameters.items()):
            if param is not None:
                del m._parameters[name]
                m.register_buffer(name, param.detach())
    return module
