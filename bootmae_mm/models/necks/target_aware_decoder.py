from typing import Sequence, Union

import torch
import torch.nn as nn
from mmengine.model import BaseModule

from ..utils import gather_tokens, mask_to_ids, sincos_pos_embed
from ..weight_init import init_transformer_weights_
from .target_aware_block import TargetAwareBlock


class TargetAwareDecoder(BaseModule):
    """Shared body of BootMAE's two decoders (docs/method.md section 4).

    It works on the full sequence (cls + all patches, original order): the
    encoder latent of cls + visible tokens is projected to ``embed_dims``
    (visible tokens keep the encoder's position information and get no
    second position embedding); every masked position gets the learned
    ``mask_token`` plus the fixed sin-cos embedding ``decoder_pos_embed``.
    Each block cross-attends to ``context`` (encoder features of cls +
    visible tokens). Subclasses add ``decoder_pred`` and ``predict``.

    Args:
        patch_resolution (int | Sequence[int]): the patch grid (h, w).
        in_dims (int): encoder width.
        embed_dims (int): decoder width.
        depth (int): number of blocks.
        num_heads (int): attention heads (the encoder's head count).
        context_dims (int, optional): width of the context; defaults to
            ``in_dims``.
        mlp_ratio (float): MLP ratio. Defaults to 4.
        cross_attention (bool): target-aware (True) or plain MAE-style
            decoder blocks (False, for ablations). Defaults to True.
        init_cfg (dict, optional): initialization config.
    """

    def __init__(self,
                 patch_resolution: Union[int, Sequence[int]],
                 in_dims: int,
                 embed_dims: int,
                 depth: int = 2,
                 num_heads: int = 12,
                 context_dims: int = None,
                 mlp_ratio: float = 4.,
                 cross_attention: bool = True,
                 init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        if isinstance(patch_resolution, int):
            patch_resolution = (patch_resolution, patch_resolution)
        self.patch_resolution = tuple(patch_resolution)
        self.decoder_embed = nn.Linear(in_dims, embed_dims)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, embed_dims))
        self.register_buffer(
            'decoder_pos_embed',
            sincos_pos_embed(self.patch_resolution, embed_dims),
            persistent=False)
        self.decoder_blocks = nn.ModuleList(
            TargetAwareBlock(embed_dims, num_heads, context_dims or in_dims,
                             mlp_ratio, cross_attention)
            for _ in range(depth))
        self.decoder_norm = nn.LayerNorm(embed_dims, eps=1e-6)

    def init_weights(self) -> None:
        """Without an ``init_cfg``: the reference's initialization
        (docs/method.md section 2b): xavier-uniform Linear weights (the
        self-attention's fused qkv per q / k / v part; the cross-attention's
        q and kv on their whole weight) with zero biases, zero q / v biases,
        LayerNorm 1 / 0, and the mask token normal with std 0.02 truncated
        at +-0.02. Other layers (the pixel decoder's transposed
        convolution) keep PyTorch's default."""
        super().init_weights()
        if self.init_cfg is not None:
            return
        with torch.no_grad():
            init_transformer_weights_(self)
            for name, param in self.named_parameters():
                if name.endswith(('.q_bias', '.v_bias')):
                    nn.init.zeros_(param)
            nn.init.trunc_normal_(self.mask_token, std=.02, a=-.02, b=.02)

    def decode(self, latent: torch.Tensor, context: torch.Tensor,
               mask: torch.Tensor) -> torch.Tensor:
        """Args:
            latent: encoder output of cls + visible tokens, (B, 1+V, in_dims).
            context: encoder tap of cls + visible tokens, (B, 1+V, context).
            mask: (B, N) or (B, h, w) patch mask, 1 = masked.

        Returns:
            Normalized decoder tokens of cls + all patches, (B, 1+N, dims).
        """
        mask = mask.flatten(1).bool()
        B, N = mask.shape
        x = self.decoder_embed(latent)
        num_visible = x.shape[1] - 1
        ids_shuffle, ids_restore = mask_to_ids(mask)
        pos_embed = self.decoder_pos_embed[:, 1:].to(x.dtype).expand(B, -1, -1)
        masked_tokens = self.mask_token.to(x.dtype) + gather_tokens(
            pos_embed, ids_shuffle[:, num_visible:])
        patches = gather_tokens(torch.cat((x[:, 1:], masked_tokens), dim=1),
                                ids_restore)
        x = torch.cat((x[:, :1], patches), dim=1)
        for block in self.decoder_blocks:
            x = block(x, context)
        return self.decoder_norm(x)
