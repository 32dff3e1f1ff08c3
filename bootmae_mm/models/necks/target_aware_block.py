"""The building block of BootMAE's target-aware decoders (docs/method.md s. 4).

Parameter names follow the reference implementation (``norm1``..``norm4``,
``q_bias``/``v_bias``) so that reference checkpoints map one to one; the
cross-attention is called ``cross_attn`` (reference: ``c_attn``).
"""
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import Mlp


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
