"""Load a BootMAE encoder into a downstream backbone, from any checkpoint
we know (BOOTMAE.md sections 8 and 9), and the ``BootMAEPretrained``
weight initializer that does it from a config::

    model = dict(backbone=dict(
        ...,
        init_cfg=dict(type='BootMAEPretrained', checkpoint=PATH,
                      source='online')))  # or 'target'

Accepted checkpoints (recognised by their keys):

- ours, written by a pretraining run (``{'state_dict': {backbone.*,
  target_encoder.*, pixel_decoder.*, ...}}``): ``source='online'`` takes
  ``backbone.*``, ``source='target'`` the momentum target
  ``target_encoder.*``; a fine-tuned classifier of ours or any mmpretrain
  ``ImageClassifier`` / ``VisionTransformer`` checkpoint (``backbone.*``, or
  bare ``layers.*`` keys) loads the same way;
- the reference pretraining (``{'model': {blocks.*, decode_blocks.*, ...}}``,
  the target from ``model_ema`` when present) and fine-tuning (``{'model':
  {blocks.*, fc_norm.*, head.*}}``) checkpoints, converted on the fly by
  :mod:`bootmae_mm.models.reference_mapping`.

A position embedding of another grid is resized by the backbone's own
``load_state_dict`` pre-hook (mmpretrain ``VisionTransformer``'s
``_prepare_pos_embed``). Which keys were used and which were not is logged;
a checkpoint with no matching key, or with keys of other shapes (another
arch), raises an error that names the file.
"""
import argparse
import logging
from typing import Callable, Dict, Optional, Tuple

import torch
from mmengine.logging import print_log
from mmengine.model.weight_init import update_init_info
from mmengine.registry import WEIGHT_INITIALIZERS

from ..compat import safe_torch_load

SOURCES = {'online': 'backbone.', 'target': 'target_encoder.'}

# keys that only a reference pretraining checkpoint has
_REFERENCE_PRETRAIN_MARKS = ('mask_token', 'decode_blocks.', 'de_pos_embed')
# keys of a bare mmpretrain VisionTransformer state dict
_VIT_MARKS = ('patch_embed.projection.', 'layers.')


def checkpoint_kind(ckpt: dict) -> str:
    """'reference_pretrain', 'reference_finetune' or 'mmengine' (ours and
    any mmengine/mmpretrain checkpoint, or a bare state dict)."""
    model = ckpt.get('model') if 'state_dict' not in ckpt else None
    if isinstance(model, dict) and any(k.startswith('blocks.')
                                       for k in model):
        if any(k.startswith(_REFERENCE_PRETRAIN_MARKS) for k in model):
            return 'reference_pretrain'
        return 'reference_finetune'
    return 'mmengine'


def _reference_state_dict(ckpt: dict, kind: str, source: str,
                          filename: str) -> dict:
    """A reference checkpoint as a state dict with our key names."""
    from . import reference_mapping
    if kind == 'reference_finetune':
        if source == 'target':
            raise ValueError(
                f'{filename} is a reference fine-tuning checkpoint: it has '
                "no momentum target; use source='online'.")
        return reference_mapping.reference_finetune_to_vit(ckpt['model'])
    ema = ckpt.get('model_ema') if source == 'target' else None
    if source == 'target' and ema is None:
        print_log(f'{filename} has no model_ema: the momentum target is '
                  'taken as a copy of the online encoder.', logger='current',
                  level=logging.WARNING)
    return reference_mapping.reference_to_bootmae(ckpt['model'], ema)


def checkpoint_state_dict(filename: str, source: str = 'online'
                          ) -> Tuple[Dict[str, torch.Tensor], str]:
    """The whole state dict of a checkpoint with our key names (a reference
    checkpoint converted), and its kind (see :func:`checkpoint_kind`)."""
    if source not in SOURCES:
        raise ValueError(f"source='{source}' is not one of {list(SOURCES)}.")
    # reference checkpoints also hold their argparse.Namespace of arguments
    with torch.serialization.safe_globals([argparse.Namespace]):
        ckpt = safe_torch_load(filename)
    if not isinstance(ckpt, dict):
        raise ValueError(f'{filename} holds a {type(ckpt).__name__}, not a '
                         'checkpoint dict.')
    kind = checkpoint_kind(ckpt)
    if kind != 'mmengine':
        from .reference_mapping import ReferenceMappingError
        try:
            return _reference_state_dict(ckpt, kind, source, filename), kind
        except ReferenceMappingError as e:
            raise ReferenceMappingError(f'{filename}: {e}') from None
    state = ckpt.get('state_dict', ckpt)
    if not isinstance(state, dict):
        raise ValueError(f"{filename}: 'state_dict' is not a dict.")
    return state, kind


def encoder_state_dict(filename: str, source: str = 'online',
                       prefix: Optional[str] = None
                       ) -> Tuple[Dict[str, torch.Tensor], str]:
    """The encoder weights of a checkpoint, named as the parameters of
    mmpretrain's ``VisionTransformer`` (no prefix).

    Args:
        filename (str): the checkpoint file.
        source (str): 'online' (the trained encoder, default) or 'target'
            (the momentum target encoder of a BootMAE pretraining run).
        prefix (str, optional): take the keys under this prefix instead
            (e.g. 'backbone.'), overriding ``source``.

    Returns:
        tuple: the state dict and a short description of what was read.
    """
    state, kind = checkpoint_state_dict(filename, source)
    prefix = prefix if prefix is not None else SOURCES[source]

    encoder = {k[len(prefix):]: v for k, v in state.items()
               if k.startswith(prefix) and isinstance(v, torch.Tensor)}
    what = f'{kind} checkpoint, keys {prefix}*'
    if not encoder and source == 'online' and any(
            k.startswith(_VIT_MARKS) for k in state):
        # a bare VisionTransformer state dict
        encoder = {k: v for k, v in state.items()
                   if isinstance(v, torch.Tensor)}
        what = f'{kind} checkpoint, bare encoder keys'
    if not encoder:
        hint = ''
        if source == 'target':
            hint = (' A BootMAE run trained without the feature branch has '
                    "no momentum target; use source='online'.")
        raise KeyError(
            f'{filename} has no {prefix}* keys ({source} encoder).{hint} '
            f'Its first keys: {sorted(state)[:8]}')
    return encoder, what


def load_encoder_state_dict(module: torch.nn.Module, state: dict,
                            filename: str = '<state dict>',
                            resizable: Optional[Callable] = None,
                            required: Optional[Callable] = None) -> dict:
    """Load ``state`` (encoder keys, no prefix) into ``module`` non-strictly
    and log what was used. Nothing is loaded when an error is raised.

    Args:
        module (nn.Module): the backbone.
        state (dict): encoder weights with the module's key names.
        filename (str): named in the log and in errors.
        resizable (callable, optional): ``(key, checkpoint_shape,
            model_shape) -> bool``, true for a key of another shape that the
            module's load pre-hooks resize. Defaults to ``pos_embed`` on a
            module with ``VisionTransformer``'s pre-hook.
        required (callable, optional): ``key -> bool``, true for a module
            key the checkpoint must hold. Defaults to none: missing keys are
            logged and left as initialized.

    Raises:
        ValueError: keys of other shapes (another arch?) or required keys
            missing, all listed; or no key matched.

    Returns:
        dict: ``used``, ``unused`` (in the checkpoint, not in the module) and
        ``missing`` (in the module, not in the checkpoint) key lists.
    """
    own = module.state_dict()
    if resizable is None:
        pos_embed_hook = hasattr(module, '_prepare_pos_embed')

        def resizable(key, *shapes):
            return pos_embed_hook and key == 'pos_embed'

    used, unused, mismatched = [], [], []
    for k, v in state.items():
        if k not in own:
            unused.append(k)
        elif own[k].shape == v.shape or resizable(k, v.shape, own[k].shape):
            used.append(k)
        else:
            mismatched.append(f'{k}: checkpoint {tuple(v.shape)} vs model '
                              f'{tuple(own[k].shape)}')
    missing = [k for k in own if k not in state]
    must_have = [k for k in missing if required is not None and required(k)]
    if mismatched:
        raise ValueError(
            f'{filename} does not fit {type(module).__name__} (another '
            f'arch?): {len(mismatched)} shape mismatches:'
            '\n  ' + '\n  '.join(mismatched))
    if not used:
        raise ValueError(
            f'No key of {filename} matched {type(module).__name__}. '
            f'Checkpoint keys: {sorted(state)[:8]} ...; model keys: '
            f'{sorted(own)[:8]} ...')
    if must_have:
        raise ValueError(
            f'{filename} does not fit {type(module).__name__} (another '
            f'arch?): {len(must_have)} keys missing from the checkpoint:'
            '\n  ' + '\n  '.join(must_have))
    module.load_state_dict({k: state[k] for k in used}, strict=False)
    print_log(f'Loaded {len(used)} tensors from {filename} into '
              f'{type(module).__name__}.', logger='current')
    if unused:
        print_log(f'Unused checkpoint keys ({len(unused)}): {unused}',
                  logger='current')
    if missing:
        print_log(f'Model keys not in the checkpoint, left as initialized '
                  f'({len(missing)}): {missing}', logger='current')
    return dict(used=used, unused=unused, missing=missing)


def load_bootmae_encoder(model: torch.nn.Module, filename: str,
                         source: str = 'online',
                         prefix: Optional[str] = None) -> dict:
    """Load the encoder of a BootMAE (or reference, or ViT) checkpoint into
    a backbone, or into ``model.backbone`` when given a whole model.

    Args:
        model (nn.Module): a ViT backbone (mmpretrain ``VisionTransformer``
            naming) or a model with a ``backbone`` attribute.
        filename (str): the checkpoint.
        source (str): 'online' (default) or 'target' (momentum target).
        prefix (str, optional): read the keys under this prefix instead.

    Returns:
        dict: ``used``, ``unused`` and ``missing`` key lists.
    """
    if hasattr(model, 'backbone') and not hasattr(model, 'patch_embed'):
        model = model.backbone
    state, what = encoder_state_dict(filename, source, prefix)
    print_log(f'Loading the {source} encoder from {filename} ({what}).',
              logger='current')
    return load_encoder_state_dict(model, state, filename)


@WEIGHT_INITIALIZERS.register_module(name='BootMAEPretrained')
class BootMAEPretrainedInit:
    """Initialize a backbone with the encoder of a BootMAE checkpoint
    (see :func:`load_bootmae_encoder` for the accepted checkpoints).

    Unlike mmengine's ``Pretrained``, which ``BaseModule.init_weights``
    applies last, a custom initializer runs *before* the sub-modules'
    own initialization and the module's code after ``super().init_weights()``
    (e.g. ``VisionTransformer`` re-drawing ``pos_embed`` unless its
    ``init_cfg`` is of type ``'Pretrained'``). So this initializer first runs
    the sub-modules' default initialization, loads the weights, and then
    marks ``module.init_cfg`` as ``type='Pretrained'``, so that nothing
    overwrites the loaded weights afterwards.

    Args:
        checkpoint (str): the checkpoint file. Must be set, e.g. with
            ``--cfg-options model.backbone.init_cfg.checkpoint=PATH``.
        source (str): 'online' (default): the trained encoder; 'target': the
            momentum target encoder of a BootMAE pretraining checkpoint.
        prefix (str, optional): read the keys under this prefix instead of
            the one ``source`` implies.
    """

    def __init__(self, checkpoint: Optional[str] = None,
                 source: str = 'online', prefix: Optional[str] = None):
        if source not in SOURCES:
            raise ValueError(f"init_cfg source='{source}' is not one of "
                             f'{list(SOURCES)}.')
        self.checkpoint = checkpoint
        self.source = source
        self.prefix = prefix

    def __call__(self, module: torch.nn.Module) -> None:
        if not self.checkpoint:
            raise ValueError(
                'BootMAEPretrained needs a checkpoint: set it with '
                '--cfg-options model.backbone.init_cfg.checkpoint=PATH')
        for child in module.children():
            if hasattr(child, 'init_weights') and not getattr(
                    child, 'is_init', False):
                child.init_weights()
        load_bootmae_encoder(module, self.checkpoint, self.source,
                             self.prefix)
        if getattr(module, 'init_cfg', None) is not None:
            module.init_cfg = dict(type='Pretrained',
                                   checkpoint=self.checkpoint)
        if hasattr(module, '_params_init_info'):
            update_init_info(module, init_info=self._get_init_info())

    def _get_init_info(self) -> str:
        return (f'{self.__class__.__name__}: {self.source} encoder of '
                f'{self.checkpoint}')



def vit_kwargs_from_state_dict(state: Dict[str, torch.Tensor],
                               num_heads: Optional[int] = None) -> dict:
    """``VisionTransformer`` arguments that rebuild the encoder whose weights
    are ``state`` (``VisionTransformer`` names, no prefix): arch, img_size,
    patch_size, final_norm (``ln1`` present) and out_type ('avg_featmap'
    when ``ln2``, the norm of the mean-pooled tokens, is present, else
    'raw'). Head counts are not in the weights: ``num_heads`` defaults to
    ``embed_dims // 64`` (every standard ViT)."""
    required = ('cls_token', 'pos_embed', 'patch_embed.projection.weight',
                'layers.0.ffn.layers.0.0.weight')
    missing = [k for k in required if k not in state]
    if missing:
        raise KeyError(f'not a ViT encoder state dict: no {missing}')
    embed_dims = state['cls_token'].shape[-1]
    num_layers = 1 + max(int(k.split('.')[1]) for k in state
                         if k.startswith('layers.'))
    patch_size = state['patch_embed.projection.weight'].shape[-1]
    grid = int(round((state['pos_embed'].shape[1] - 1)**0.5))
    return dict(
        arch=dict(
            embed_dims=embed_dims,
            num_layers=num_layers,
            num_heads=num_heads or max(1, embed_dims // 64),
            feedforward_channels=state[
                'layers.0.ffn.layers.0.0.weight'].shape[0]),
        img_size=grid * patch_size,
        patch_size=patch_size,
        final_norm='ln1.weight' in state,
        out_type='avg_featmap' if 'ln2.weight' in state else 'raw')
