"""mmpretrain's stock ViTs as BootMAE encoders.

``model.backbone=dict(type='VisionTransformer' | 'MAEViT' | 'BEiTViT',
...)`` in a BootMAE config builds the stock class with
:class:`VisibleTokenEncoderMixin` in front (:func:`resolve_encoder_cfg`):
the same parameters and names, so the pretrained encoder loads back into
the stock class.
"""
import copy
from typing import Optional

import torch
from mmpretrain.models import BEiTViT, MAEViT, VisionTransformer
from mmpretrain.registry import MODELS

from ..models.backbones.bootmae_vit import VisibleTokenEncoderMixin
from ..models.backbones.encoder_contract import missing_methods


class ContractViT(VisibleTokenEncoderMixin, VisionTransformer):
    """mmpretrain's ``VisionTransformer`` (any arch, learned position
    embedding) as a BootMAE encoder."""


class ContractMAEViT(VisibleTokenEncoderMixin, MAEViT):
    """mmpretrain's ``MAEViT`` as a BootMAE encoder (BootMAE's masks
    replace MAE's random masking)."""


class ContractBEiTViT(VisibleTokenEncoderMixin, BEiTViT):
    """mmpretrain's ``BEiTViT`` with a relative position bias shared by all
    blocks (``use_shared_rel_pos_bias=True``, as BEiT pretrains) as a
    BootMAE encoder: each block gets the bias between the kept tokens.

    A bias per block (``use_rel_pos_bias=True``) is computed inside the
    block for every patch and cannot follow the visible patches: refused.
    mmpretrain's ``BEiTViT(use_rel_pos_bias=True)`` copies a shared table
    into every block when it loads such a checkpoint (fine-tuning).
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if any(layer.attn.relative_position_bias_table is not None
               for layer in self.layers):
            raise ValueError(
                'model.backbone.use_rel_pos_bias=True (BEiTViT\'s default): '
                'a relative position bias per block covers every patch, '
                'BootMAE\'s encoder sees the visible ones only; set '
                'use_rel_pos_bias=False, use_shared_rel_pos_bias=True.')

    def _block_args(self, ids: Optional[torch.Tensor]) -> tuple:
        if self.rel_pos_bias is None:
            return (None, )
        bias = self.rel_pos_bias()  # (heads, 1 + N, 1 + N), cls first
        if ids is None:
            return (bias, )
        tokens = torch.cat((ids.new_zeros(ids.shape[0], 1), ids + 1), dim=1)
        # (heads, B, 1 + V, 1 + V) -> (B, heads, 1 + V, 1 + V)
        kept = bias[:, tokens[:, :, None], tokens[:, None, :]]
        return (kept.transpose(0, 1), )


#: stock class -> the class built in its place inside BootMAE
ADAPTERS = {
    VisionTransformer: ContractViT,
    MAEViT: ContractMAEViT,
    BEiTViT: ContractBEiTViT,
}


def resolve_encoder_cfg(cfg: dict, key: str = 'model.backbone') -> dict:
    """``cfg`` with a stock class of :data:`ADAPTERS` replaced by its
    adapter; a class that neither meets the encoder contract nor has an
    adapter is refused (``TypeError`` naming ``key``)."""
    cfg = copy.deepcopy(cfg)
    cls = cfg.get('type')
    if isinstance(cls, str):
        found = MODELS.get(cls)
        if found is None:
            raise KeyError(f'{key}.type={cls!r} is not a registered model.')
        cls = found
    cls = ADAPTERS.get(cls, cls)
    missing = missing_methods(cls)
    if missing:
        names = ', '.join(c.__name__ for c in ADAPTERS)
        raise TypeError(
            f'{key}.type={cls.__name__}: not a BootMAE encoder (BootMAE '
            f'docstring, README "Mixing with mmpretrain"): it has no '
            f'{", ".join(missing)} (the cls + visible-patch tokens with '
            f'the low- and high-level taps, and the momentum target copy); '
            f'stock classes taken as they are: {names}.')
    cfg['type'] = cls
    return cfg
