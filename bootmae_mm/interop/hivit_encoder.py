"""mmpretrain's HiViT family (``HiViT``, ``MAEHiViT``, ``iTPNHiViT``) as a
BootMAE encoder."""
from typing import Optional

import torch

from ..models.backbones.bootmae_vit import VisibleTokenEncoderMixin
from ..models.backbones.encoder_contract import (
    EncoderOutput,
    check_patches_do_not_overlap,
)
from ..models.utils import gather_tokens, visible_ids
from .visible_positions import blocks_attend_at_positions


def _with_cls_slot(tokens: torch.Tensor) -> torch.Tensor:
    """(B, V, D) -> (B, 1 + V, D), the mean of the tokens first."""
    return torch.cat((tokens.mean(dim=1, keepdim=True), tokens), dim=1)


class HiViTEncoderMixin(VisibleTokenEncoderMixin):
    """Encodes the visible 16 x 16 tokens of a HiViT, as mmpretrain's
    ``MAEHiViT`` masks: a token's 4 x 4 inner patches go through the MLP
    stem and the patch merges together (nothing there mixes tokens), then
    the main stage's attention blocks see the visible tokens with their
    absolute position embedding.

    HiViT has no cls token: the cls slot of each output is the mean of the
    visible tokens (no parameter; BootMAE's feature target is the patch
    tokens). HiViT has no final norm: ``latent`` is the last block's output.
    A relative position bias per block (``rpe=True``, as mmpretrain's HiViT
    fine-tuning configs) is read between the kept tokens' grid positions.

    Args:
        low_level_index (int): main-stage block whose output is the
            low-level tap. Defaults to 0.
        with_cp (bool): activation checkpointing of each main block.
    """

    encoder_parts = ('patch_embed', 'pos_embed', 'blocks')

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # a bias per block (rpe=True)
        blocks_attend_at_positions(self._main_blocks())

    def _check_structure(self) -> None:
        check_patches_do_not_overlap(
            self.patch_embed.proj, 'model.backbone.kernel_size',
            what='inner patches', hint='; leave kernel_size and pad_size out')

    def _main_blocks(self):
        return self.blocks[-self.num_main_blocks:]

    @property
    def patch_resolution(self) -> tuple:
        return tuple(self.patch_embed.patches_resolution)

    def encode(self, x: torch.Tensor, mask: Optional[torch.Tensor] = None,
               num_visible: Optional[int] = None) -> EncoderOutput:
        """(latent, low_level, high_level) of the cls slot + the visible
        tokens (all tokens when ``mask`` is None); arguments as
        :meth:`VisibleTokenEncoderMixin.encode`."""
        B, _, H, W = x.shape
        grid = (H // self.patch_size, W // self.patch_size)
        if grid != self.patch_resolution:
            raise ValueError(
                f'input gives a {grid} token grid, the encoder was built '
                f'for {self.patch_resolution} (img_size).')
        x = self.patch_embed(x)  # (B, N, inner, inner, C)
        ids = None
        if mask is not None:
            ids = visible_ids(mask, num_visible)
            x = torch.gather(x, 1, ids[:, :, None, None, None].expand(
                -1, -1, *x.shape[2:]))
        for block in self.blocks[:-self.num_main_blocks]:
            x = block(x)
        x = x[..., 0, 0, :]  # the merged token
        if self.ape:
            pos_embed = self.pos_embed.expand(B, -1, -1)
            x = x + (pos_embed if ids is None else
                     gather_tokens(pos_embed, ids))
        x = self.pos_drop(x)
        # rpe=True: the bias between the kept tokens' grid positions
        positions = (None if not self.rpe else
                     True if ids is None else ids)
        low_level, x = self._run_blocks(x, (positions, ))
        high_level = _with_cls_slot(x)
        return EncoderOutput(high_level, _with_cls_slot(low_level),
                             high_level)
