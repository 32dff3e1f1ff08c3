"""BootMAE's two target-aware decoders and their block (docs/method.md
section 4): the pixel decoder (context: the encoder's low-level tap,
predicts the image) and the feature decoder (context: the high-level tap,
predicts the momentum target's features).

Parameter names follow the reference implementation (``norm1``..``norm4``,
``q_bias``/``v_bias``) so that reference checkpoints map one to one; the
cross-attention is called ``cross_attn`` (reference: ``c_attn``).
"""
from typing import Optional, Sequence, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModule
from mmpretrain.registry import MODELS
from timm.layers import Mlp

from ...config_errors import ConfigValueError
from ..utils import gather_tokens, mask_to_ids, sincos_pos_embed
from ..weight_init import init_transformer_weights_


class _QVBiasAttention(nn.Module):
    """Multi-head attention whose inner width is ``num_heads * (dims //
    num_heads)`` (may differ from ``dims``) with biases on q and v only."""

    def __init__(self, dims: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.head_dims = dims // num_heads
        self.inner_dims = num_heads * self.head_dims
        self.q_bias = nn.Parameter(torch.zeros(self.inner_dims))
        self.v_bias = nn.Parameter(torch.zeros(self.inner_dims))
        self.proj = nn.Linear(self.inner_dims, dims)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        B, L, _ = x.shape
        return x.view(B, L, self.num_heads, self.head_dims).transpose(1, 2)

    def _attend(self, q, k, v) -> torch.Tensor:
        out = F.scaled_dot_product_attention(
            self._heads(q), self._heads(k), self._heads(v))
        B, _, L, _ = out.shape
        return self.proj(out.transpose(1, 2).reshape(B, L, self.inner_dims))


class SelfAttention(_QVBiasAttention):
    """Self-attention with a fused qkv projection (q and v biases)."""

    def __init__(self, dims: int, num_heads: int):
        super().__init__(dims, num_heads)
        self.qkv = nn.Linear(dims, 3 * self.inner_dims, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = torch.cat((self.q_bias, torch.zeros_like(self.v_bias),
                          self.v_bias))
        q, k, v = F.linear(x, self.qkv.weight, bias).chunk(3, dim=-1)
        return self._attend(q, k, v)


class CrossAttention(_QVBiasAttention):
    """Queries from the decoder stream, keys and values from the context."""

    def __init__(self, dims: int, num_heads: int, context_dims: int):
        super().__init__(dims, num_heads)
        self.q = nn.Linear(dims, self.inner_dims, bias=False)
        self.kv = nn.Linear(context_dims, 2 * self.inner_dims, bias=False)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        q = F.linear(x, self.q.weight, self.q_bias)
        kv_bias = torch.cat((torch.zeros_like(self.v_bias), self.v_bias))
        k, v = F.linear(context, self.kv.weight, kv_bias).chunk(2, dim=-1)
        return self._attend(q, k, v)


class TargetAwareBlock(nn.Module):
    """Pre-norm block with three residual branches::

        x = x + SelfAttn(norm1(x))
        x = x + CrossAttn(query=norm3(x), key/value=norm4(context))
        x = x + MLP(norm2(x))

    Args:
        dims (int): width of the decoder stream.
        num_heads (int): attention heads (the encoder's head count).
        context_dims (int): width of the encoder features attended to.
        mlp_ratio (float): MLP hidden width / dims. Defaults to 4.
        cross_attention (bool): with False the block is a plain pre-norm
            transformer block (the MAE-style ablation). Defaults to True.
        eps (float): LayerNorm epsilon. Defaults to 1e-6.
    """

    def __init__(self, dims: int, num_heads: int, context_dims: int,
                 mlp_ratio: float = 4., cross_attention: bool = True,
                 eps: float = 1e-6):
        super().__init__()
        self.norm1 = nn.LayerNorm(dims, eps=eps)
        self.attn = SelfAttention(dims, num_heads)
        self.cross_attention = cross_attention
        if cross_attention:
            self.norm3 = nn.LayerNorm(dims, eps=eps)
            self.norm4 = nn.LayerNorm(context_dims, eps=eps)
            self.cross_attn = CrossAttention(dims, num_heads, context_dims)
        self.norm2 = nn.LayerNorm(dims, eps=eps)
        self.mlp = Mlp(dims, int(dims * mlp_ratio), act_layer=nn.GELU)

    def forward(self, x: torch.Tensor,
                context: Optional[torch.Tensor] = None) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        if self.cross_attention:
            x = x + self.cross_attn(self.norm3(x), self.norm4(context))
        return x + self.mlp(self.norm2(x))


class TargetAwareDecoder(BaseModule):
    """Shared body of BootMAE's two decoders (docs/method.md section 4).

    It works on the full sequence (cls + all patches, original order): the
    encoder latent of cls + visible tokens is projected to ``embed_dims``
    (visible tokens keep the encoder's position information and get no
    second position embedding); every masked position gets the learned
    ``mask_token`` plus the fixed sin-cos embedding ``decoder_pos_embed``.
    Each block cross-attends to ``context`` (encoder features of cls +
    visible tokens). The two decoders below add ``decoder_pred``.

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
        if not isinstance(num_heads, int) or not 1 <= num_heads <= embed_dims:
            raise ConfigValueError(
                'num_heads', num_heads,
                f'num_heads={num_heads!r} cannot split the decoder width '
                f'{embed_dims} (embed_dims) into heads.')
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


@MODELS.register_module()
class BootMAEPixelDecoder(TargetAwareDecoder):
    """The pixel decoder: width 512, depth 2, context = the encoder's
    low-level tap; predicts the whole image with a transposed convolution
    (docs/method.md section 4).

    Args:
        patch_size (int): encoder patch size. Defaults to 16.
        in_channels (int): image channels. Defaults to 3.
        embed_dims (int): decoder width. Defaults to 512.
        **kwargs: see :class:`TargetAwareDecoder`.
    """

    def __init__(self, patch_size: int = 16, in_channels: int = 3,
                 embed_dims: int = 512, **kwargs):
        super().__init__(embed_dims=embed_dims, **kwargs)
        self.decoder_pred = nn.ConvTranspose2d(
            embed_dims, in_channels, kernel_size=patch_size, stride=patch_size)

    def forward(self, latent: torch.Tensor, context: torch.Tensor,
                mask: torch.Tensor) -> torch.Tensor:
        """Returns the predicted image, (B, C, H, W)."""
        x = self.decode(latent, context, mask)[:, 1:]
        h, w = self.patch_resolution
        x = x.transpose(1, 2).reshape(x.shape[0], -1, h, w)
        return self.decoder_pred(x)


@MODELS.register_module()
class BootMAEFeatureDecoder(TargetAwareDecoder):
    """The feature decoder: width D (the encoder's), depth 2, context = the
    encoder's high-level tap; predicts one D-vector per patch
    (docs/method.md section 4).

    Args:
        in_dims (int): encoder width D; also the decoder and output width
            unless ``embed_dims`` / ``out_dims`` say otherwise.
        embed_dims (int, optional): decoder width. Defaults to ``in_dims``.
        out_dims (int, optional): predicted feature width (the target
            encoder's). Defaults to ``in_dims``.
        **kwargs: see :class:`TargetAwareDecoder`.
    """

    def __init__(self, in_dims: int, embed_dims: int = None,
                 out_dims: int = None, **kwargs):
        embed_dims = embed_dims or in_dims
        super().__init__(in_dims=in_dims, embed_dims=embed_dims, **kwargs)
        self.decoder_pred = nn.Linear(embed_dims, out_dims or in_dims)

    def forward(self, latent: torch.Tensor, context: torch.Tensor,
                mask: torch.Tensor) -> torch.Tensor:
        """Returns the predicted features of every patch, (B, N, out_dims)."""
        return self.decoder_pred(self.decode(latent, context, mask))[:, 1:]
