"""Test fixture: a compact, independent re-implementation of the reference
BootMAE pretraining forward (LightDXY/BootMAE, modeling_pretrain_bootmae.py
and run_pretraining.py), with the reference parameter names, so that the
converter can be checked end to end against it. Written from reading the
reference; explicit softmax attention, no sdpa, none of our modules.

Only what computes predictions, targets and losses for given images and
masks is here (no drop path, no layer scale), plus the reference's
initialization from scratch, :func:`reference_init_`.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


def reference_sincos(side, dims):
    """The reference's MoCo v3 embedding: meshgrid(grid_w, grid_h) ('ij'),
    [sin(w), cos(w), sin(h), cos(h)] with a zero cls row."""
    grid_w, grid_h = torch.meshgrid(torch.arange(side, dtype=torch.float32),
                                    torch.arange(side, dtype=torch.float32),
                                    indexing='ij')
    omega = 1. / (10000.**(torch.arange(dims // 4, dtype=torch.float32) /
                           (dims // 4)))
    out_w = grid_w.flatten()[:, None] * omega[None]
    out_h = grid_h.flatten()[:, None] * omega[None]
    emb = torch.cat([out_w.sin(), out_w.cos(), out_h.sin(), out_h.cos()], 1)
    return torch.cat([torch.zeros(1, dims), emb])[None]


def _attend(q, k, v, heads, proj):
    B, N, _ = q.shape
    q = q.reshape(B, N, heads, -1).transpose(1, 2)
    k = k.reshape(B, k.shape[1], heads, -1).transpose(1, 2)
    v = v.reshape(B, v.shape[1], heads, -1).transpose(1, 2)
    attn = (q * q.shape[-1]**-0.5) @ k.transpose(-2, -1)
    out = attn.softmax(-1) @ v
    return proj(out.transpose(1, 2).reshape(B, N, -1))


class Attention(nn.Module):

    def __init__(self, dim, heads):
        super().__init__()
        inner = dim // heads * heads
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * inner, bias=False)
        self.q_bias = nn.Parameter(torch.zeros(inner))
        self.v_bias = nn.Parameter(torch.zeros(inner))
        self.proj = nn.Linear(inner, dim)

    def forward(self, x):
        bias = torch.cat((self.q_bias, torch.zeros_like(self.v_bias),
                          self.v_bias))
        q, k, v = F.linear(x, self.qkv.weight, bias).chunk(3, -1)
        return _attend(q, k, v, self.heads, self.proj)


class CrossAttention(nn.Module):

    def __init__(self, dim, c_dim, heads):
        super().__init__()
        inner = dim // heads * heads
        self.heads = heads
        self.q = nn.Linear(dim, inner, bias=False)
        self.kv = nn.Linear(c_dim, 2 * inner, bias=False)
        self.q_bias = nn.Parameter(torch.zeros(inner))
        self.v_bias = nn.Parameter(torch.zeros(inner))
        self.proj = nn.Linear(inner, dim)

    def forward(self, x, fea):
        q = F.linear(x, self.q.weight, self.q_bias)
        kv_bias = torch.cat((torch.zeros_like(self.v_bias), self.v_bias))
        k, v = F.linear(fea, self.kv.weight, kv_bias).chunk(2, -1)
        return _attend(q, k, v, self.heads, self.proj)


class Mlp(nn.Module):

    def __init__(self, dim):
        super().__init__()
        self.fc1 = nn.Linear(dim, 4 * dim)
        self.fc2 = nn.Linear(4 * dim, dim)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):

    def __init__(self, dim, heads):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class DecodeBlock(Block):

    def __init__(self, dim, c_dim, heads):
        super().__init__(dim, heads)
        self.norm3 = nn.LayerNorm(dim, eps=1e-6)
        self.norm4 = nn.LayerNorm(c_dim, eps=1e-6)
        self.c_attn = CrossAttention(dim, c_dim, heads)

    def forward(self, x, fea):
        x = x + self.attn(self.norm1(x))
        x = x + self.c_attn(self.norm3(x), self.norm4(fea))
        return x + self.mlp(self.norm2(x))


class _Proj(nn.Module):
    """Holds ``proj`` (reference ``patch_embed`` / ``lm_head``)."""

    def __init__(self, proj):
        super().__init__()
        self.proj = proj


class ReferenceBootMAE(nn.Module):
    """``VisionTransformerForMaskedImageModeling`` of the reference, reduced
    to its forward; taps after blocks ``fea_list = (0, depth - 1)``."""

    def __init__(self, img_size=32, patch_size=8, dim=64, depth=3, heads=2,
                 decode_dim=32, decoder_depth=2):
        super().__init__()
        self.side = img_size // patch_size
        self.dim, self.decode_dim = dim, decode_dim
        self.fea_list = (0, depth - 1)
        self.patch_embed = _Proj(nn.Conv2d(3, dim, patch_size, patch_size))
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(reference_sincos(self.side, dim),
                                      requires_grad=False)
        self.de_pos_embed = nn.Parameter(
            reference_sincos(self.side, decode_dim), requires_grad=False)
        self.blocks = nn.ModuleList(Block(dim, heads) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.decode_blocks = nn.ModuleList(
            DecodeBlock(decode_dim, dim, heads) for _ in range(decoder_depth))
        self.decode_norm = nn.LayerNorm(decode_dim, eps=1e-6)
        self.down = nn.Linear(dim, decode_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decode_dim))
        self.lm_head = _Proj(
            nn.ConvTranspose2d(decode_dim, 3, patch_size, patch_size))
        self.decode_blocks_1 = nn.ModuleList(
            DecodeBlock(dim, dim, heads) for _ in range(decoder_depth))
        self.down_1 = nn.Linear(dim, dim)
        self.mask_token_1 = nn.Parameter(torch.zeros(1, 1, dim))
        self.decode_norm_1 = nn.LayerNorm(dim, eps=1e-6)
        self.lm_head_1 = nn.Linear(dim, dim)

    def _embed(self, x):
        x = self.patch_embed.proj(x).flatten(2).transpose(1, 2)
        cls = self.cls_token.expand(x.shape[0], -1, -1)
        return torch.cat((cls, x), 1) + self.pos_embed

    def get_feature(self, x):
        """The momentum target: all tokens, last block, no norm, no cls."""
        x = self._embed(x)
        for blk in self.blocks:
            x = blk(x)
        return x[:, 1:]

    @staticmethod
    def _gather(x, idx):
        return torch.gather(x, 1, idx.unsqueeze(-1).expand(-1, -1,
                                                           x.shape[-1]))

    def _decode(self, x, fea, blocks, down, mask_token, pos_embed, norm,
                idx_mask, idx_unshuffle):
        B = x.shape[0]
        mask_pe = self._gather(pos_embed.expand(B, -1, -1), idx_mask)
        tokens = mask_token.expand(B, idx_mask.shape[1], -1) + mask_pe
        x = self._gather(torch.cat([down(x), tokens], 1), idx_unshuffle)
        for blk in blocks:
            x = blk(x, fea)
        return norm(x)[:, 1:]

    def forward(self, x, mask_len, idx_shuffle):
        """``idx_shuffle`` (B, N): visible patch indices first (any order),
        then the ``mask_len`` masked ones. Returns (pixels, features)."""
        B, N = idx_shuffle.shape
        idx_shuffle = torch.cat([idx_shuffle.new_zeros(B, 1),
                                 idx_shuffle + 1], 1)
        idx_unshuffle = idx_shuffle.argsort(1)
        keep = N - mask_len
        x = self._gather(self._embed(x), idx_shuffle[:, :1 + keep])
        feas = []
        for i, blk in enumerate(self.blocks):
            x = blk(x)
            if i in self.fea_list:
                feas.append(x)
        x = self.norm(x)
        idx_mask = idx_shuffle[:, 1 + keep:]
        x0 = self._decode(x, feas[0], self.decode_blocks, self.down,
                          self.mask_token, self.de_pos_embed,
                          self.decode_norm, idx_mask, idx_unshuffle)
        x0 = x0.transpose(1, 2).reshape(B, -1, self.side, self.side)
        x1 = self._decode(x, feas[1], self.decode_blocks_1, self.down_1,
                          self.mask_token_1, self.pos_embed,
                          self.decode_norm_1, idx_mask, idx_unshuffle)
        return self.lm_head.proj(x0), self.lm_head_1(x1)


def reference_losses(pixels, features, images, feat_gt, mask, patch_size,
                     feature_weight=1.0):
    """Rloss + feature_weight * Ploss as in the reference training loop
    (weight_mask on). ``mask``: (B, h, w), 1 = masked."""
    B, _, H, W = images.shape
    m = mask.float()[:, None]
    w = m * F.avg_pool2d(m, 3, 1, padding=1) + m
    perc = w.reshape(B, -1, 1)
    w_up = F.interpolate(w, (H, W), mode='nearest')
    m_up = F.interpolate(m, (H, W), mode='nearest')
    s, p = H // patch_size, patch_size
    patch = images.reshape(B, 3, s, p, s, p)
    mean = patch.mean(dim=(3, 5), keepdim=True)
    std = (patch.var(dim=(3, 5), unbiased=False, keepdim=True) + 1e-5).sqrt()
    im_norm = ((patch - mean) / std).reshape(B, 3, H, W)
    rloss = (w_up * (pixels - im_norm)**2).mean() / m_up.mean()
    D = features.shape[-1]
    ploss = (perc * (F.layer_norm(feat_gt, (D, ), eps=1e-6) -
                     F.layer_norm(features, (D, ), eps=1e-6))**2).mean() \
        / m_up.mean()
    return rloss, ploss * feature_weight


@torch.no_grad()
def reference_init_(model):
    """Initialize a :class:`ReferenceBootMAE` as the reference does before
    pretraining from scratch, written as the reference orders it: cls token
    normal(std 1e-6), both mask tokens BEiT's ``trunc_normal_`` (std 0.02,
    cut at one std), then every module: Linear xavier-uniform with zero
    bias, LayerNorm 1 / 0; then the fused qkv weights redrawn per part
    (MoCo v3's rule: bound sqrt(6 / (out / 3 + in))), and the patch
    embedding conv xavier-uniform on its (D, C * p * p) view, zero bias.
    The transposed conv of the pixel head keeps PyTorch's default; the
    q / v biases are the zeros they are built with."""
    nn.init.normal_(model.cls_token, std=1e-6)
    for token in (model.mask_token, model.mask_token_1):
        nn.init.trunc_normal_(token, std=.02, a=-.02, b=.02)

    def init_module(m):
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.constant_(m.bias, 0)
        elif isinstance(m, nn.LayerNorm):
            nn.init.constant_(m.weight, 1.0)
            nn.init.constant_(m.bias, 0)

    model.apply(init_module)
    for name, m in model.named_modules():
        if isinstance(m, nn.Linear) and name.endswith('.qkv'):
            bound = math.sqrt(6. / (m.weight.shape[0] // 3 +
                                    m.weight.shape[1]))
            nn.init.uniform_(m.weight, -bound, bound)
    conv = model.patch_embed.proj
    nn.init.xavier_uniform_(conv.weight.view(conv.weight.shape[0], -1))
    nn.init.zeros_(conv.bias)
    return model
