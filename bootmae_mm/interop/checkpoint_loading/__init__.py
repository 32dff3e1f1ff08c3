"""Checkpoint loading, one job per module (docs/method.md sections 8 and 9):

- :mod:`.reading`: read a file or ``http(s)://`` URL safely and tell the
  format apart (ours / any mmengine checkpoint, the reference pretraining
  and fine-tuning checkpoints, converted on the fly);
- :mod:`.encoder`: take the encoder weights out of it (``source='online'``:
  ``backbone.*``; ``'target'``: the momentum target ``target_encoder.*``
  or the reference ``model_ema``; bare ``VisionTransformer`` keys);
- :mod:`.loading`: load them into a module, refuse another arch (every
  mismatched key and shape listed, the file named) and report the keys
  used, unused and missing;
- :mod:`.initializer`: the ``BootMAEPretrained`` initializer of configs::

    model = dict(backbone=dict(
        ...,
        init_cfg=dict(type='BootMAEPretrained', checkpoint=PATH_OR_URL,
                      source='online')))  # or 'target'

A position embedding of another grid is resized by the backbone's own
``load_state_dict`` pre-hook (mmpretrain ``VisionTransformer``'s
``_prepare_pos_embed``).
"""
from .encoder import encoder_state_dict, extract_encoder
from .initializer import BootMAEPretrainedInit
from .loading import load_bootmae_encoder, load_encoder_state_dict
from .reading import (
                      SOURCES,
                      checkpoint_kind,
                      checkpoint_state_dict,
                      converted_state_dict,
                      read_checkpoint,
)

__all__ = [
    'SOURCES', 'BootMAEPretrainedInit', 'checkpoint_kind',
    'checkpoint_state_dict', 'converted_state_dict', 'encoder_state_dict',
    'extract_encoder', 'load_bootmae_encoder', 'load_encoder_state_dict',
    'read_checkpoint'
]
