"""What the exporters (``tools/model_converters/bootmae_to_vit.py`` and
``bootmae_to_timm.py``) need: the encoder of a checkpoint, our model built
from the architecture the checkpoint itself records, and the
``VisionTransformer`` arguments that model has.

Head counts are not in the weights, so the architecture is never guessed:
it comes from the checkpoint's saved config (``meta['cfg']``, written by
every mmengine ``Runner``), from a reference checkpoint's ``args`` (its
model name), or from ``num_heads`` given by the user; without any of
them, :func:`load_export_source` refuses.
"""
import argparse
import copy
import re
from typing import Dict, NamedTuple, Optional

import torch
from mmengine.config import Config

from .checkpoint_loading import (
    converted_state_dict,
    extract_encoder,
    load_encoder_state_dict,
    read_checkpoint,
)

# reference model names (``args.model``, e.g. 'bootmae_base') -> heads
_REFERENCE_HEADS = {'tiny': 3, 'small': 6, 'base': 12, 'large': 16,
                    'huge': 16}


class ExportSource(NamedTuple):
    """An encoder to export.

    - ``ours``: our encoder built from the checkpoint's recorded
      architecture, loaded from it, in eval mode: what an export must
      reproduce;
    - ``state``: its weights (``VisionTransformer`` names);
    - ``head``: ``head.*`` of a fine-tuned classifier (online source only);
    - ``vit_kwargs``: ``VisionTransformer`` arguments of ``ours``;
    - ``origin``: where the architecture came from.
    """
    ours: torch.nn.Module
    state: Dict[str, torch.Tensor]
    head: Dict[str, torch.Tensor]
    vit_kwargs: dict
    origin: str


def vit_kwargs_from_state_dict(state: Dict[str, torch.Tensor],
                               num_heads: int) -> dict:
    """``VisionTransformer`` arguments that rebuild the encoder whose weights
    are ``state`` (``VisionTransformer`` names, no prefix) with
    ``num_heads`` heads (not in the weights): arch, img_size, patch_size,
    final_norm (``ln1`` present) and out_type ('avg_featmap' when ``ln2``,
    the norm of the mean-pooled tokens, is present, else 'raw')."""
    required = ('cls_token', 'pos_embed', 'patch_embed.projection.weight',
                'layers.0.ffn.layers.0.0.weight')
    missing = [k for k in required if k not in state]
    if missing:
        raise KeyError(f'not a ViT encoder state dict: no {missing}')
    embed_dims = state['cls_token'].shape[-1]
    if embed_dims % num_heads:
        raise ValueError(f'{num_heads} heads do not divide the encoder '
                         f'width {embed_dims}.')
    num_layers = 1 + max(int(k.split('.')[1]) for k in state
                         if k.startswith('layers.'))
    patch_size = state['patch_embed.projection.weight'].shape[-1]
    grid = int(round((state['pos_embed'].shape[1] - 1)**0.5))
    return dict(
        arch=dict(
            embed_dims=embed_dims,
            num_layers=num_layers,
            num_heads=num_heads,
            feedforward_channels=state[
                'layers.0.ffn.layers.0.0.weight'].shape[0]),
        img_size=grid * patch_size,
        patch_size=patch_size,
        final_norm='ln1.weight' in state,
        out_type='avg_featmap' if 'ln2.weight' in state else 'raw')


def vit_kwargs_of(encoder: torch.nn.Module) -> dict:
    """The ``VisionTransformer`` arguments of a built ViT encoder
    (mmpretrain ``VisionTransformer`` or a subclass)."""
    ffn = encoder.layers[0].ffn
    return dict(
        arch=dict(embed_dims=encoder.embed_dims,
                  num_layers=encoder.num_layers,
                  num_heads=encoder.layers[0].attn.num_heads,
                  feedforward_channels=ffn.feedforward_channels),
        img_size=tuple(encoder.patch_embed.init_input_size),
        patch_size=encoder.patch_embed.projection.kernel_size[0],
        final_norm=encoder.final_norm,
        out_type=encoder.out_type)


def _saved_config(ckpt: dict, filename: str) -> Optional[Config]:
    meta = ckpt.get('meta')
    text = meta.get('cfg') if isinstance(meta, dict) else None
    if not text:
        return None
    try:
        cfg = Config.fromstring(text, '.py')
    except Exception as e:
        raise ValueError(f"{filename}: its saved config (meta['cfg']) does "
                         f'not parse: {e}') from None
    if not isinstance(cfg.get('model'), dict) or \
            'backbone' not in cfg.model:
        raise ValueError(f"{filename}: its saved config (meta['cfg']) has "
                         'no model.backbone to export.')
    scope = cfg.get('default_scope', 'mmpretrain')
    if scope != 'mmpretrain':
        raise ValueError(f"{filename}: its saved config is an {scope} "
                         "config; the exporters take mmpretrain models "
                         '(pretraining, fine-tuning, linear probing).')
    return cfg


def _model_from_config(cfg: Config, source: str, filename: str
                       ) -> torch.nn.Module:
    """The encoder of our model built from a saved config: ``backbone``
    (online) or ``target_encoder`` (momentum target)."""
    from mmengine.registry import DefaultScope
    from mmpretrain.registry import MODELS
    model_cfg = copy.deepcopy(cfg.model)
    model_cfg.backbone.pop('init_cfg', None)  # the weights come from SRC
    model_cfg.backbone.pop('with_cp', None)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MODELS.build(model_cfg)
    name = 'backbone' if source == 'online' else 'target_encoder'
    encoder = getattr(model, name, None)
    if encoder is None:
        raise ValueError(f'{filename}: the model of its saved config '
                         f'({model_cfg.type}) has no {name} ({source} '
                         'encoder).')
    return encoder


def _reference_heads(ckpt: dict) -> Optional[int]:
    """The head count a reference checkpoint's ``args.model`` implies."""
    args = ckpt.get('args')
    if isinstance(args, argparse.Namespace):
        args = vars(args)
    name = args.get('model') if isinstance(args, dict) else None
    for word in re.split(r'[_\-]', str(name or '')):
        if word in _REFERENCE_HEADS:
            return _REFERENCE_HEADS[word]
    return None


def _recorded_vit_kwargs(ckpt: dict, kind: str, state: dict,
                         num_heads: Optional[int], filename: str):
    """``VisionTransformer`` arguments and their origin for a checkpoint
    without a saved config: an export of ours (``meta['vit_kwargs']``), a
    reference checkpoint (``args.model``) or ``num_heads``."""
    meta = ckpt.get('meta')
    if kind == 'mmengine' and isinstance(meta, dict) and \
            isinstance(meta.get('vit_kwargs'), dict):
        return dict(meta['vit_kwargs']), \
            "meta['vit_kwargs'] (an export of bootmae_to_vit.py)"
    heads = _reference_heads(ckpt) if kind != 'mmengine' else None
    if heads is not None:
        return vit_kwargs_from_state_dict(state, heads), \
            'the reference arguments (args.model)'
    if num_heads is None:
        raise ValueError(
            f"{filename} records no architecture (no meta['cfg'], no "
            'reference args) and head counts are not in the weights: give '
            'the head count with --num-heads.')
    return vit_kwargs_from_state_dict(state, num_heads), '--num-heads'


def load_export_source(filename: str, source: str = 'online',
                       num_heads: Optional[int] = None) -> ExportSource:
    """Read ``filename`` (a path or an ``http(s)://`` URL) and build our
    encoder of the architecture it records, loaded from it.

    Args:
        filename (str): a checkpoint of ours (pretraining, fine-tuning,
            linear probing) or a reference checkpoint.
        source (str): 'online' or 'target' (momentum target).
        num_heads (int, optional): attention heads, for a checkpoint that
            records none (no ``meta['cfg']``, no reference ``args``). Must
            agree with the recorded count when there is one.

    Raises:
        ValueError: no recorded head count and no ``num_heads``; a
            ``num_heads`` that contradicts the record; weights that do not
            fit the recorded architecture (keys listed).
    """
    ckpt = read_checkpoint(filename)
    full, kind = converted_state_dict(ckpt, source, filename)
    state, _ = extract_encoder(full, kind, filename, source)
    head = {k: v for k, v in full.items()
            if k.startswith('head.') and isinstance(v, torch.Tensor)} \
        if source == 'online' else {}

    cfg = _saved_config(ckpt, filename) if kind == 'mmengine' else None
    if cfg is not None:
        ours = _model_from_config(cfg, source, filename)
        origin = f"the saved config (meta['cfg'], model.{cfg.model.type})"
    else:
        from ..models.backbones import BootMAEViT
        kwargs, origin = _recorded_vit_kwargs(ckpt, kind, state, num_heads,
                                              filename)
        ours = BootMAEViT(**kwargs)
    recorded = ours.layers[0].attn.num_heads
    if num_heads is not None and num_heads != recorded:
        raise ValueError(f'--num-heads {num_heads} contradicts {filename}: '
                         f'{origin} has {recorded} heads.')
    report = load_encoder_state_dict(ours, state, filename,
                                     required=lambda key: True)
    state = {k: state[k] for k in report['used']}
    from ..models.backbones.bootmae_vit import QVBiasQKV
    for name, module in ours.named_modules():  # the k bias ours uses: 0
        if isinstance(module, QVBiasQKV) and f'{name}.bias' in state:
            state[f'{name}.bias'] = module.qv_bias.detach()
    ours.eval()  # (mmpretrain backbones' train() returns None)
    return ExportSource(ours, state, head, vit_kwargs_of(ours), origin)
