"""Read a checkpoint file or URL and tell its format apart.

Formats (recognised by their keys):

- ``'mmengine'``: ours and any mmengine / mmpretrain / mmseg checkpoint
  (``{'state_dict': ..., 'meta': ...}``) or a bare state dict;
- ``'reference_pretrain'``: the reference pretraining checkpoint
  (``{'model': {blocks.*, decode_blocks.*, ...}, 'model_ema': ...}``);
- ``'reference_finetune'``: the reference fine-tuning checkpoint
  (``{'model': {blocks.*, fc_norm.*, head.*}}``).

Reference checkpoints are converted to our key names on the fly by
:mod:`bootmae_mm.interop.reference_mapping` (docs/method.md section 9).
"""
import logging
from typing import Dict, Tuple

import torch
from mmengine.logging import print_log

from ..checkpoint_files import (
    register_checkpoint_adapter,
    safe_load_checkpoint,
)

# keys that only a reference pretraining checkpoint has
_REFERENCE_PRETRAIN_MARKS = ('mask_token', 'decode_blocks.', 'de_pos_embed')
SOURCES = {'online': 'backbone.', 'target': 'target_encoder.'}


def read_checkpoint(filename: str) -> dict:
    """The checkpoint dict of a local file or an ``http(s)://`` URL (fetched
    once into torch's hub cache), read with ``weights_only=True`` and the
    allow-list of :mod:`bootmae_mm.compat`.

    Raises:
        FileNotFoundError, RuntimeError, UnsafeCheckpointError: naming the
            file (see
            :func:`bootmae_mm.interop.checkpoint_files.safe_torch_load`).
        ValueError: the file holds no dict.
    """
    ckpt = safe_load_checkpoint(filename)
    if not isinstance(ckpt, dict):
        raise ValueError(f'{filename} holds a {type(ckpt).__name__}, not a '
                         'checkpoint dict.')
    return ckpt


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
    from .. import reference_mapping
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


def converted_state_dict(ckpt: dict, source: str = 'online',
                         filename: str = '<checkpoint>'
                         ) -> Tuple[Dict[str, torch.Tensor], str]:
    """The whole state dict of a read checkpoint with our key names (a
    reference checkpoint converted), and its kind (see
    :func:`checkpoint_kind`). ``filename`` is named in errors."""
    if source not in SOURCES:
        raise ValueError(f"source='{source}' is not one of {list(SOURCES)}.")
    kind = checkpoint_kind(ckpt)
    if kind != 'mmengine':
        from ..reference_mapping import ReferenceMappingError
        try:
            return _reference_state_dict(ckpt, kind, source, filename), kind
        except ReferenceMappingError as e:
            raise ReferenceMappingError(f'{filename}: {e}') from None
    state = ckpt.get('state_dict', ckpt)
    if not isinstance(state, dict):
        raise ValueError(f"{filename}: 'state_dict' is not a dict.")
    return state, kind


def checkpoint_state_dict(filename: str, source: str = 'online'
                          ) -> Tuple[Dict[str, torch.Tensor], str]:
    """:func:`converted_state_dict` of the checkpoint at ``filename`` (a
    path or an ``http(s)://`` URL)."""
    if source not in SOURCES:
        raise ValueError(f"source='{source}' is not one of {list(SOURCES)}.")
    return converted_state_dict(read_checkpoint(filename), source, filename)


def mmengine_layout(ckpt: dict, filename: str = '<checkpoint>') -> dict:
    """A reference checkpoint in mmengine's layout (``{'state_dict': our
    key names, 'meta': ...}``: the whole ``BootMAE`` with the target from
    ``model_ema``, or the ``ImageClassifier``); any other checkpoint as it
    is. mmengine's loaders apply it, so that ``load_from``,
    ``mmengine.runner.load_checkpoint`` and mmpretrain's ``get_model``
    load the published checkpoints instead of finding no key. A
    ``{'model': ...}`` checkpoint that does not map (another
    implementation's) is returned as it is, with a warning."""
    kind = checkpoint_kind(ckpt) if isinstance(ckpt, dict) else 'mmengine'
    if kind == 'mmengine':
        return ckpt
    # 'target': the momentum target from model_ema (the online weights
    # always come from 'model')
    source = 'target' if kind == 'reference_pretrain' else 'online'
    from ..reference_mapping import ReferenceMappingError
    try:
        state, _ = converted_state_dict(ckpt, source, filename)
    except ReferenceMappingError as e:
        # another implementation's {'model': ...} (MAE, BEiT): as it is
        print_log(f'{filename} is not a BootMAE reference checkpoint, '
                  f'loaded as it is: {e}', logger='current',
                  level=logging.WARNING)
        return ckpt
    return dict(state_dict=state,
                meta=dict(converted_from=f'{kind} checkpoint',
                          source=filename))


register_checkpoint_adapter(mmengine_layout)
