"""FSDP auto-wrap policy for BootMAE: one FSDP unit per transformer block."""
import torch.nn as nn
from mmengine.registry import FUNCTIONS
from mmpretrain.models.backbones.vision_transformer import (
    TransformerEncoderLayer,
)

from bootmae_mm.models.necks import TargetAwareBlock

BLOCKS = {TransformerEncoderLayer, TargetAwareBlock}


@FUNCTIONS.register_module()
def bootmae_block_wrap_policy(module: nn.Module, recurse: bool,
                              nonwrapped_numel: int) -> bool:
    """Wrap every encoder block (mmpretrain's ``TransformerEncoderLayer``)
    and decoder block (``TargetAwareBlock``) as its own FSDP unit; the rest
    (patch embedding, tokens, norms, decoder heads) stays in the root unit.

    Use it as ``strategy.model_wrapper.auto_wrap_policy =
    'bootmae_block_wrap_policy'``. Unlike a size-based policy it never makes
    a unit of a single ``Linear`` whose weight the enclosing block reads
    directly (the decoders' attention adds separate q / v biases to
    ``qkv.weight``), which FSDP would leave sharded at that point.

    Args:
        module (nn.Module): the candidate module.
        recurse (bool): FSDP's traversal flag.
        nonwrapped_numel (int): parameters not yet wrapped below it.
    """
    if recurse:
        return True
    # blocks without parameters (the momentum target's, made of buffers)
    # stay unwrapped: FSDP would only rename their buffers
    return nonwrapped_numel > 0 and isinstance(module, tuple(BLOCKS))
