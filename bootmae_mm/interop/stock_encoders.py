"""mmpretrain's stock ViT family as BootMAE encoders.

``model.backbone=dict(type=<a stock ViT-family class>, ...)`` in a BootMAE
config builds the stock class with the adapter of its family in front
(:func:`resolve_encoder_cfg`): the same parameters and names, so the
pretrained encoder loads back into the stock class. A family is found by
the class's bases: ``VisionTransformer`` and its subclasses (DeiT, DeiT-III,
MAE, MoCo v3, MaskFeat, MFF, MILAN), ``ViTEVA02`` (rotary position
embedding), ``BEiTViT`` (BEiT, CAE), ``RevVisionTransformer`` and ``HiViT``
(MAE-HiViT, iTPN). README "Mixing with mmpretrain" has the table.
"""
import copy
import inspect
import re
from typing import Optional

import torch
import torch.utils.checkpoint as cp
from mmpretrain.models import (
    TNT,
    BEiTViT,
    Conformer,
    DeiT3,
    HiViT,
    LeViT,
    MixMIMTransformer,
    RevVisionTransformer,
    T2T_ViT,
    VisionTransformer,
    ViTEVA02,
    ViTSAM,
    XCiT,
)
from mmpretrain.registry import MODELS

from ..models.backbones.bootmae_vit import VisibleTokenEncoderMixin
from ..models.backbones.encoder_contract import (
    ENCODER_ADAPTERS,
    missing_methods,
)
from .hivit_encoder import HiViTEncoderMixin
from .visible_positions import blocks_attend_at_positions, rope_at_positions


class RotaryEncoderMixin(VisibleTokenEncoderMixin):
    """``ViTEVA02``: its rotary position embedding turns each visible
    token's query and key by that token's own grid position (the target
    encoder: the full grid)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # the module shared by every block, its buffers and names kept
        self.rope.__class__ = rope_at_positions(type(self.rope))

    def _block_args(self, ids: Optional[torch.Tensor]) -> tuple:
        return (self.patch_resolution if ids is None else ids, )


class RelativeBiasEncoderMixin(VisibleTokenEncoderMixin):
    """``BEiTViT``: its relative position bias, shared by all blocks
    (``use_shared_rel_pos_bias=True``, as BEiT pretrains) or one per block
    (``use_rel_pos_bias=True``, BEiTViT's default), is read between the
    kept tokens' grid positions (the target encoder: the full grid)."""

    def __init__(self, *args, **kwargs):
        default = inspect.signature(self.stock_class).parameters.get(
            'layer_scale_init_value')
        scale = kwargs.get('layer_scale_init_value',
                           default.default if default else 0)
        if scale is None:
            raise ValueError(
                f'model.backbone.layer_scale_init_value=None (the default of '
                f'{type(self).__name__}) fails in BEiT\'s blocks; set '
                f'layer_scale_init_value=0.1 (as CAE\'s configs do) or 0.')
        super().__init__(*args, **kwargs)
        # a bias per block (or shared, or none)
        self.bias_per_block = blocks_attend_at_positions(self.layers)

    def _block_args(self, ids: Optional[torch.Tensor]) -> tuple:
        if ids is None:
            return (None if self.rel_pos_bias is None else
                    self.rel_pos_bias(), )
        # grid positions of the kept tokens, cls (0) first
        tokens = torch.cat((ids.new_zeros(ids.shape[0], 1), ids + 1), dim=1)
        if self.bias_per_block:
            return (tokens, )  # read by each block's own table
        if self.rel_pos_bias is None:
            return (None, )
        bias = self.rel_pos_bias()  # (heads, 1 + N, 1 + N)
        # (heads, B, 1 + V, 1 + V) -> (B, heads, 1 + V, 1 + V)
        kept = bias[:, tokens[:, :, None], tokens[:, None, :]]
        return (kept.transpose(0, 1), )


class ReversibleEncoderMixin(VisibleTokenEncoderMixin):
    """``RevVisionTransformer``: the two residual streams run block by
    block with ordinary backpropagation (the taps are block outputs, which
    the reversible backward does not keep); a tap is the two streams fused
    as the stock class fuses its output (``fusion_mode``).

    Each block is the stock one's arithmetic (``y1 = x1 + f(x2)``,
    ``y2 = x2 + g(y1)``, one drop-path draw for both branches) without its
    reseeding of the global random generators, which only the reversible
    backward needs and which would make a run irreproducible."""

    encoder_parts = VisibleTokenEncoderMixin.encoder_parts + (
        'fusion_layer', )

    def _check_structure(self) -> None:
        wrong = []
        if self.cls_token is None:
            wrong.append(('with_cls_token=False', 'with_cls_token=True'))
        if self.fusion_layer.mode == 'concat':
            wrong.append(("fusion_mode='concat'", "fusion_mode='avg'"))
        if wrong:
            raise ValueError(
                f'model.backbone.{", ".join(w for w, _ in wrong)} '
                f'(RevVisionTransformer\'s defaults: no cls token, output '
                f'twice as wide): BootMAE needs a cls token and tokens as '
                f'wide as embed_dims; set {", ".join(r for _, r in wrong)} '
                f'(neither changes the parameters: the checkpoint loads into '
                f'mmpretrain\'s RevViT configs).')
        super()._check_structure()

    def encode(self, x: torch.Tensor, mask: Optional[torch.Tensor] = None,
               num_visible: Optional[int] = None):
        x, _ = self._visible_tokens(x, mask, num_visible)
        streams = (x, x)
        low_level = None
        checkpoint = self._checkpointing()
        for i, layer in enumerate(self.layers):
            streams = cp.checkpoint(_reversible_block, layer, *streams,
                                    use_reentrant=False) \
                if checkpoint else _reversible_block(layer, *streams)
            if i == self.low_level_index:
                low_level = self.fusion_layer(torch.cat(streams, dim=-1))
        x = torch.cat(streams, dim=-1)
        latent = self.fusion_layer(self.ln1(x) if self.final_norm else x)
        return self._contract_output(latent, low_level, self.fusion_layer(x))


def _reversible_block(layer, x1: torch.Tensor, x2: torch.Tensor) -> tuple:
    """``RevTransformerEncoderLayer``'s forward, without the reseeding."""
    f = layer.attn(layer.ln1(x2))
    drop_prob = float(layer.drop_path_cfg['drop_prob'])
    if layer.training and drop_prob > 0:  # one per-sample draw, both
        keep = x1.new_empty(x1.shape[0], 1, 1).bernoulli_(1 - drop_prob)
        scale = keep / (1 - drop_prob)
    else:
        scale = 1
    y1 = x1 + f * scale
    return y1, x2 + layer.ffn(layer.ln2(y1)) * scale


#: family base class -> its adapter (the most derived base of a class wins)
FAMILIES = {
    VisionTransformer: VisibleTokenEncoderMixin,
    ViTEVA02: RotaryEncoderMixin,
    BEiTViT: RelativeBiasEncoderMixin,
    RevVisionTransformer: ReversibleEncoderMixin,
    HiViT: HiViTEncoderMixin,
}

#: ViT-family classes that cannot be a BootMAE encoder, and why
NOT_ENCODERS = {
    ViTSAM: 'its blocks take the 2-D grid of all patches (windowed '
    'attention, relative position per block) and it has no cls token',
    T2T_ViT: 'its tokens come from overlapping soft splits, so a visible '
    'token sees the pixels of masked ones',
    TNT: 'its inner transformer embeds pixel tokens inside every patch '
    'and its outer tokens are not patch embeddings alone',
    XCiT: 'its local patch interaction is a convolution over the 2-D '
    'grid of all patches, and its stem convolutions overlap',
    Conformer: 'its convolution branch runs on the whole image and feeds '
    'every transformer block',
    LeViT: 'it is hierarchical (attention blocks that shrink the grid, '
    'convolution stem) with no cls token',
    MixMIMTransformer: 'it is hierarchical (window attention, patch '
    'merging between stages) with no cls token',
}

#: parameters that a stock block never runs: mmpretrain 1.2's DeiT-III
#: block normalizes both of its branches with ``ln1``
NEVER_RUN = {DeiT3: r'layers\.\d+\.ln2\.'}

_ADAPTED = {}


class _InsideBootMAE:
    """What the encoder never runs (e.g. a ``mask_token``) takes no
    gradient, so that DDP finds no unused parameter; it stays in the
    state dict, which loads into the stock class."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        never_run = [NEVER_RUN[c] for c in type(self).__mro__
                     if c in NEVER_RUN]
        for name, param in self.named_parameters():
            if name.split('.')[0] not in self.encoder_parts or any(
                    re.match(pattern, name) for pattern in never_run):
                param.requires_grad = False


def adapted_class(cls: type, key: str = 'model.backbone') -> type:
    """The class built for the stock class ``cls`` inside BootMAE: ``cls``
    itself when it meets the contract, else ``cls`` with its family's
    adapter in front; a ``TypeError`` naming ``key`` when neither."""
    if not missing_methods(cls):
        return cls
    for base in cls.__mro__:
        if base in NOT_ENCODERS:
            raise TypeError(
                f'{key}.type={cls.__name__}: cannot be a BootMAE encoder: '
                f'{NOT_ENCODERS[base]} (BootMAE encodes the cls token and '
                f'the visible patches only; README "Mixing with '
                f'mmpretrain").')
        if base in FAMILIES:
            if cls not in _ADAPTED:
                _ADAPTED[cls] = type(
                    cls.__name__, (_InsideBootMAE, FAMILIES[base], cls),
                    dict(__doc__=f'mmpretrain\'s ``{cls.__name__}`` as a '
                         f'BootMAE encoder ({FAMILIES[base].__name__}).',
                         __module__=__name__, stock_class=cls))
            return _ADAPTED[cls]
    names = ', '.join(c.__name__ for c in FAMILIES)
    raise TypeError(
        f'{key}.type={cls.__name__}: not a BootMAE encoder (BootMAE '
        f'docstring, README "Mixing with mmpretrain"): it has no '
        f'{", ".join(missing_methods(cls))} (the cls + visible-patch tokens '
        f'with the low- and high-level taps, and the momentum target copy); '
        f'stock families taken as they are: {names} and their subclasses.')


def resolve_encoder_cfg(cfg: dict, key: str = 'model.backbone') -> dict:
    """``cfg`` with a stock ViT-family class replaced by its adapted class
    (:func:`adapted_class`)."""
    cfg = copy.deepcopy(cfg)
    cls = cfg.get('type')
    if isinstance(cls, str):
        found = MODELS.get(cls)
        if found is None:
            raise KeyError(f'{key}.type={cls!r} is not a registered model.')
        cls = found
    cfg['type'] = adapted_class(cls, key)
    return cfg


ENCODER_ADAPTERS.append(resolve_encoder_cfg)
