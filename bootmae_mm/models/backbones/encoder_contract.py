"""What BootMAE needs from its encoder (docs/method.md section 2), and the
check that a built backbone provides it.

An encoder that BootMAE can train:

- ``encode(x, mask=None, num_visible=None)`` returns an
  :class:`EncoderOutput` for the cls token plus the *visible* patches only
  (raster order; all patches when ``mask`` is None). ``forward(x, mask,
  num_visible)`` with a tensor ``mask`` does the same;
- the taps ``low_level`` and ``high_level`` are block outputs with *no*
  final norm (``latent`` is the last block after the final norm, if any);
- ``build_target()`` returns the copy that becomes the momentum target: the
  same parameter names (a subset is fine), run in eval mode without
  gradients; BootMAE reads ``encode(x).high_level`` of it;
- the attributes ``embed_dims``, ``num_heads``, ``patch_size`` and
  ``patch_resolution`` (the patch grid), which the decoders follow.
"""
from typing import Callable, List, NamedTuple

import torch

#: Methods an encoder class needs.
CONTRACT_METHODS = ('encode', 'build_target')
#: Attributes a built encoder needs.
CONTRACT_ATTRIBUTES = ('embed_dims', 'num_heads', 'patch_size',
                       'patch_resolution')


class EncoderOutput(NamedTuple):
    """What an encoder gives BootMAE for cls + visible tokens, each
    (B, 1 + V, D)."""
    #: last block output after the final norm (the decoders' input)
    latent: torch.Tensor
    #: output of the low-level block (the pixel decoder's context)
    low_level: torch.Tensor
    #: output of the last block before any final norm (the feature
    #: decoder's context; of the momentum target: the feature target)
    high_level: torch.Tensor


#: Functions ``(cfg, key) -> cfg`` that give a backbone config a class
#: meeting the contract: ``bootmae_mm.interop.stock_encoders`` adds the one
#: for mmpretrain's ViT family (its adapters), so that the method needs
#: nothing of ``interop``.
ENCODER_ADAPTERS: List[Callable[[dict, str], dict]] = []


def adapt_encoder_cfg(cfg: dict, key: str = 'model.backbone') -> dict:
    """``cfg`` passed through every function of :data:`ENCODER_ADAPTERS`."""
    for adapt in ENCODER_ADAPTERS:
        cfg = adapt(cfg, key)
    return cfg


def missing_methods(cls: type) -> list:
    """The contract methods that ``cls`` lacks."""
    return [name for name in CONTRACT_METHODS
            if not callable(getattr(cls, name, None))]


def check_encoder(encoder, key: str = 'model.backbone') -> None:
    """Raise a ``TypeError`` naming ``key`` and what is missing when the
    built ``encoder`` does not meet the contract."""
    missing = missing_methods(type(encoder)) + [
        name for name in CONTRACT_ATTRIBUTES if not hasattr(encoder, name)]
    if missing:
        raise TypeError(
            f'{key}: {type(encoder).__name__} does not meet the BootMAE '
            f'encoder contract (BootMAE docstring, README "Mixing with '
            f'mmpretrain"): it has no {", ".join(missing)}.')


def check_patches_do_not_overlap(proj: torch.nn.Conv2d, key: str,
                                 what: str = 'square patches',
                                 hint: str = '') -> None:
    """Raise a ``ValueError`` naming the config ``key`` unless the patch
    projection ``proj`` cuts square patches that do not overlap (kernel =
    stride): a visible token must see no pixel of a masked one.

    Args:
        proj (nn.Conv2d): the patch embedding's projection.
        key (str): the config key that sets it.
        what (str): what the message calls the patches.
        hint (str): what to do, appended to the message.
    """
    kernel, stride = tuple(proj.kernel_size), tuple(proj.stride)
    if kernel != stride or kernel[0] != kernel[1]:
        raise ValueError(
            f'{key}: BootMAE needs {what} that do not overlap (kernel '
            f'{kernel}, stride {stride}){hint}.')
