"""Load weights into a module non-strictly, refusing what cannot fit, and
report what was used."""
from typing import Callable, Optional

import torch
from mmengine.logging import print_log

from .encoder import encoder_state_dict


def _listed(title: str, keys: list, limit: int = 20) -> list:
    lines = [f'{len(keys)} {title}:'] + [f'  {k}' for k in keys[:limit]]
    if len(keys) > limit:
        lines.append(f'  ... and {len(keys) - limit} more')
    return lines


def load_encoder_state_dict(module: torch.nn.Module, state: dict,
                            filename: str = '<state dict>',
                            resizable: Optional[Callable] = None,
                            required: Optional[Callable] = None,
                            target: Optional[str] = None) -> dict:
    """Load ``state`` (the module's key names) into ``module`` non-strictly
    and log what was used. Nothing is loaded when an error is raised.

    Args:
        module (nn.Module): the backbone (or any module).
        state (dict): weights with the module's key names.
        filename (str): named in the log and in errors.
        resizable (callable, optional): ``(key, checkpoint_shape,
            model_shape) -> bool``, true for a key of another shape that the
            module's load pre-hooks resize. Defaults to ``pos_embed`` on a
            module with ``VisionTransformer``'s pre-hook.
        required (callable, optional): ``key -> bool``, true for a module
            key the checkpoint must hold. Defaults to none: missing keys are
            logged and left as initialized.
        target (str, optional): what ``module`` is called in errors (e.g.
            'the config'). Defaults to its class name.

    Raises:
        ValueError: keys of other shapes (another arch?) and required keys
            missing, all listed in one message; or no key matched.

    Returns:
        dict: ``used``, ``unused`` (in the checkpoint, not in the module) and
        ``missing`` (in the module, not in the checkpoint) key lists.
    """
    own = module.state_dict()
    # the side named in shape lines: 'model', or e.g. 'config'
    side = target.split()[-1] if target else 'model'
    target = target or type(module).__name__
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
            mismatched.append(f'{k}: checkpoint {tuple(v.shape)} vs {side} '
                              f'{tuple(own[k].shape)}')
    missing = [k for k in own if k not in state]
    must_have = [k for k in missing if required is not None and required(k)]
    if mismatched or must_have:
        lines = [f'{filename} does not fit {target} (another arch?):']
        if mismatched:
            lines += _listed('shape mismatches', mismatched)
        if must_have:
            lines += _listed('missing keys (not in the checkpoint)',
                             must_have)
        raise ValueError('\n  '.join(lines))
    if not used:
        raise ValueError(
            f'No key of {filename} matched {target}. '
            f'Checkpoint keys: {sorted(state)[:8]} ...; model keys: '
            f'{sorted(own)[:8]} ...')
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
        filename (str): the checkpoint, a path or an ``http(s)://`` URL.
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
