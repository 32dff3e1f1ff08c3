"""Take the encoder weights out of a checkpoint's state dict, named as the
parameters of mmpretrain's ``VisionTransformer`` (no prefix)."""
from typing import Dict, Optional, Tuple

import torch

from .reading import SOURCES, checkpoint_state_dict

# keys of a bare mmpretrain VisionTransformer state dict
_VIT_MARKS = ('patch_embed.projection.', 'layers.')


def extract_encoder(state: Dict[str, torch.Tensor], kind: str,
                    filename: str = '<checkpoint>', source: str = 'online',
                    prefix: Optional[str] = None
                    ) -> Tuple[Dict[str, torch.Tensor], str]:
    """The encoder weights of a whole state dict (our key names).

    Args:
        state (dict): the state dict (see :func:`converted_state_dict`).
        kind (str): its checkpoint kind, named in the description.
        filename (str): named in errors.
        source (str): 'online' (the trained encoder, default) or 'target'
            (the momentum target encoder of a BootMAE pretraining run).
        prefix (str, optional): take the keys under this prefix instead
            (e.g. 'backbone.'), overriding ``source``.

    Raises:
        KeyError: no encoder key in ``state`` (names the file).

    Returns:
        tuple: the encoder state dict and a short description of what was
        read.
    """
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


def encoder_state_dict(filename: str, source: str = 'online',
                       prefix: Optional[str] = None
                       ) -> Tuple[Dict[str, torch.Tensor], str]:
    """The encoder weights of the checkpoint at ``filename`` (a path or an
    ``http(s)://`` URL); see :func:`extract_encoder`."""
    state, kind = checkpoint_state_dict(filename, source)
    return extract_encoder(state, kind, filename, source, prefix)


