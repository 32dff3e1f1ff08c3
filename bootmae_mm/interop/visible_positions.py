"""Stock position modules that also take the grid positions of the tokens
they see, so that an encoder of the visible patches gives each token its
own position: subclasses with the same parameters, buffers and names, put
in place of a built module's class (``module.__class__ = ...``).

A position argument that is an integer tensor (B, T) holds the grid index
of every token (0 .. N - 1; with a cls token counted first, 0 = cls); any
other value is handled by the stock ``forward``.
"""
import torch
import torch.nn.functional as F

_MADE = {}


def _is_positions(value) -> bool:
    return torch.is_tensor(value) and not value.is_floating_point()


def _subclass(cls: type, forward) -> type:
    return _MADE.setdefault((cls, forward.__name__), type(
        cls.__name__, (cls, ), dict(forward=forward)))


def rope_at_positions(rope_cls: type) -> type:
    """mmpretrain's rotary embedding (``RotaryEmbeddingFast``, its tables
    ``freqs_cos`` / ``freqs_sin`` over the grid): ``forward(x, positions)``
    rotates (B, heads, T, d) by each token's own grid position."""

    def rope_forward(self, x, patch_resolution):
        if not _is_positions(patch_resolution):
            return rope_cls.forward(self, x, patch_resolution)
        cos = self.freqs_cos[patch_resolution].unsqueeze(1)  # (B, 1, T, d)
        sin = self.freqs_sin[patch_resolution].unsqueeze(1)
        pairs = x.unflatten(-1, (-1, 2))
        rotated = torch.stack((-pairs[..., 1], pairs[..., 0]), dim=-1)
        return x * cos + rotated.flatten(-2) * sin

    return _subclass(rope_cls, rope_forward)


def attention_at_positions(attn_cls: type) -> type:
    """An attention with its own relative position bias table (mmpretrain's
    ``BEiTAttention``, HiViT's ``Attention``: ``relative_position_bias_table``
    indexed by ``relative_position_index``): ``forward(x, positions)`` adds
    the bias between the tokens' grid positions."""

    def attention_forward(self, x, *args, **kwargs):
        # BEiT's blocks pass ``rel_pos_bias=``, HiViT's ``rpe_index``
        positions = args[0] if args else next(iter(kwargs.values()), None)
        if not _is_positions(positions):
            return attn_cls.forward(self, x, *args, **kwargs)
        B, T, C = x.shape
        if getattr(self, 'bias', None) == 'qv_bias':  # BEiT: no k bias
            qkv = F.linear(x, self.qkv.weight, torch.cat((
                self.q_bias, torch.zeros_like(self.v_bias), self.v_bias)))
        else:
            qkv = self.qkv(x)
        q, k, v = qkv.view(B, T, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        table = self.relative_position_bias_table[
            self.relative_position_index]  # (grid, grid, heads)
        bias = table[positions[:, :, None], positions[:, None, :]]
        x = F.scaled_dot_product_attention(
            q, k, v, attn_mask=bias.permute(0, 3, 1, 2).to(q.dtype),
            dropout_p=self.attn_drop.p if self.training else 0.,
            scale=self.scale)
        return self.proj_drop(self.proj(x.transpose(1, 2).reshape(B, T, C)))

    return _subclass(attn_cls, attention_forward)


def blocks_attend_at_positions(blocks) -> bool:
    """Give every block whose attention has its own relative position bias
    table :func:`attention_at_positions` (same module, parameters and
    names); returns whether any block has one."""
    found = False
    for block in blocks:
        if block.attn.relative_position_bias_table is not None:
            block.attn.__class__ = attention_at_positions(type(block.attn))
            found = True
    return found
