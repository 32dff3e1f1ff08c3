"""Refusing, before any step, a checkpoint written for another model."""
from typing import Dict, List

import torch
from mmengine.runner.checkpoint import CheckpointLoader
from mmpretrain.utils import get_ori_model


class CheckpointMismatchError(ValueError):
    """A checkpoint whose tensors do not fit the model built from the
    config; the message names the file and the first mismatches."""


def _checkpoint_shapes(filename: str) -> Dict[str, torch.Size]:
    # read as ``load_from`` / resume will read it: mmengine's loader for the
    # file's scheme (ours: the safe loader, http(s) URLs through the cache,
    # reference checkpoints in mmengine's layout)
    checkpoint = CheckpointLoader.load_checkpoint(filename,
                                                  map_location='cpu')
    state = checkpoint.get('state_dict', checkpoint) \
        if isinstance(checkpoint, dict) else {}
    return {(k[len('module.'):] if k.startswith('module.') else k): v.shape
            for k, v in state.items() if isinstance(v, torch.Tensor)}


def checkpoint_mismatches(model: torch.nn.Module, filename: str,
                          keys_too: bool) -> List[str]:
    """``key: checkpoint shape vs model shape`` for every tensor of the
    checkpoint's ``state_dict`` whose shape differs from the model's, and,
    with ``keys_too``, ``key: only in the checkpoint / model`` for every
    key one side lacks."""
    model = get_ori_model(model)
    wanted = {k: v.shape for k, v in model.state_dict().items()}
    found = _checkpoint_shapes(filename)
    lines = [f'{k}: checkpoint {tuple(found[k])} vs model {tuple(shape)}'
             for k, shape in wanted.items()
             if k in found and found[k] != shape]
    if keys_too:
        lines += [f'{k}: only in the model' for k in wanted if k not in found]
        lines += [f'{k}: only in the checkpoint' for k in found
                  if k not in wanted]
    return lines


def check_checkpoint_fits(model: torch.nn.Module, filename: str,
                          resume: bool, shown: int = 5) -> None:
    """Raise :class:`CheckpointMismatchError` naming ``filename`` when the
    checkpoint cannot continue (``resume``: every key and shape must match)
    or initialize (``load_from``: every shared key's shape must match)
    this model; it lists the first ``shown`` mismatches."""
    lines = checkpoint_mismatches(model, filename, keys_too=resume)
    if not lines:
        return
    more = f'\n  ... ({len(lines) - shown} more)' if len(lines) > shown \
        else ''
    if resume:
        advice = ('resume needs the architecture that wrote it: drop the '
                  '--cfg-options that changed the model, or start a new run '
                  'in another work dir (--work-dir)')
    else:
        advice = ('set load_from_skip_mismatched=True in the config to '
                  'start those tensors from their initialization instead')
    raise CheckpointMismatchError(
        f'{"resume" if resume else "load_from"}: checkpoint {filename} does '
        f'not fit the model of this config ({len(lines)} mismatched '
        f'tensor(s)): {advice}.\n  ' + '\n  '.join(lines[:shown]) + more)
