"""Inside BootMAE, the ViT-family encoders give each visible token its
own grid position (ViTEVA02's rotary embedding, the relative position
biases of BEiTViT and HiViT), never let a masked patch's pixels in (HiViT:
masked per 16 x 16 token, before its stem), and run RevViT's blocks as
stock without reseeding the random generators: each checked against the
stock modules, one image at a time."""
import copy

import pytest
import torch
from mmpretrain.registry import MODELS

import bootmae_mm  # noqa: F401
from helpers.bootmae import random_patch_mask
from helpers.vit_family import bootmae_cfg, tiny_backbone


@pytest.mark.parametrize('name', ['VisionTransformer', 'DeiT3', 'ViTEVA02',
                                  'BEiTViT', 'RevVisionTransformer', 'HiViT'])
def test_masked_patches_do_not_reach_the_encoder(name):
    """The visible tokens' outputs do not change when the masked patches'
    pixels do (HiViT: masked at the 16 x 16 token level, before its stem)
    and, all patches kept, the masked path is the full-grid path."""
    torch.manual_seed(0)
    model = MODELS.build(bootmae_cfg(tiny_backbone(name)))
    encoder = model.backbone
    encoder.eval()
    g = torch.Generator().manual_seed(2)
    imgs = torch.randn(2, 3, 32, 32, generator=g)
    masks = torch.stack([random_patch_mask(g) for _ in range(2)])
    pixel_mask = masks.repeat_interleave(8, 1).repeat_interleave(8, 2)
    other = torch.where(pixel_mask.bool()[:, None],
                        torch.randn(imgs.shape, generator=g), imgs)
    with torch.no_grad():
        out = encoder(imgs, masks, 4)
        torch.testing.assert_close(encoder(other, masks, 4), out)
        assert out.high_level.shape == (2, 5, 48)
        full = encoder.encode(imgs)
        kept_all = encoder(imgs, torch.zeros_like(masks))
    for a, b in zip(full, kept_all):
        torch.testing.assert_close(a, b)
    assert not torch.allclose(encoder.encode(other).high_level,
                              full.high_level)


def test_eva02_rotates_each_visible_token_by_its_own_position():
    """The rotary embedding of the visible tokens (indices ``ids``) is the
    full grid's, kept at those tokens; the target encoder rotates the full
    grid as the stock class does."""
    torch.manual_seed(0)
    model = MODELS.build(bootmae_cfg(tiny_backbone('ViTEVA02')))
    rope = model.backbone.rope
    assert model.backbone.layers[0].attn.rope is rope
    q = torch.randn(2, 3, 16, 16)
    ids = torch.tensor([[1, 4, 6, 15], [0, 2, 3, 9]])
    full = rope(q, (4, 4))
    kept = torch.stack([full[b][:, ids[b]] for b in range(2)])
    visible = torch.stack([q[b][:, ids[b]] for b in range(2)])
    torch.testing.assert_close(rope(visible, ids), kept)
    stock = MODELS.build(tiny_backbone('ViTEVA02')).rope
    stock.load_state_dict(rope.state_dict())
    torch.testing.assert_close(stock(q, (4, 4)), full, rtol=0, atol=0)
    assert model.target_encoder.layers[1].attn.rope is \
        model.target_encoder.rope


def test_eva02_encoder_gives_the_visible_tokens_their_grid_positions():
    """End to end: each image's visible tokens through the stock blocks, with
    the stock rotary module holding the rotations of exactly their grid
    positions, give the encoder's output."""
    from mmpretrain.models.utils import RotaryEmbeddingFast
    torch.manual_seed(0)
    model = MODELS.build(bootmae_cfg(tiny_backbone('ViTEVA02')))
    encoder = model.backbone
    encoder.eval()
    g = torch.Generator().manual_seed(3)
    imgs = torch.randn(2, 3, 32, 32, generator=g)
    masks = torch.stack([random_patch_mask(g) for _ in range(2)])
    with torch.no_grad():
        out = encoder(imgs, masks, 4)
        for b in range(2):
            visible = torch.nonzero(masks[b].flatten() == 0).flatten()
            reference = copy.deepcopy(encoder)
            reference.rope.__class__ = RotaryEmbeddingFast  # stock forward
            for name in ('freqs_cos', 'freqs_sin'):
                setattr(reference.rope, name,
                        getattr(encoder.rope, name)[visible])
            x, _ = reference.patch_embed(imgs[b:b + 1])
            x = x[:, visible] + reference.pos_embed[:, 1:][:, visible]
            cls = reference.cls_token + reference.pos_embed[:, :1]
            x = reference.pre_norm(torch.cat((cls, x), dim=1))
            for layer in reference.layers:
                x = layer(x, reference.patch_resolution)
            torch.testing.assert_close(out.high_level[b:b + 1], x)


def test_beit_bias_per_block_follows_the_visible_patches():
    """BEiTViT's default, a relative position bias per block: each image's
    kept tokens get each block's bias between exactly their own positions
    (compared with the stock blocks given that bias, one image at a
    time)."""
    from mmpretrain.models.utils import BEiTAttention
    torch.manual_seed(0)
    model = MODELS.build(bootmae_cfg(tiny_backbone('BEiTViT')))
    encoder = model.backbone
    assert encoder.rel_pos_bias is None
    with torch.no_grad():  # biases that matter
        for layer in encoder.layers:
            layer.attn.relative_position_bias_table.normal_()
    model.copy_online_to_target()
    encoder.eval()
    g = torch.Generator().manual_seed(4)
    imgs = torch.randn(2, 3, 32, 32, generator=g)
    masks = torch.stack([random_patch_mask(g) for _ in range(2)])
    with torch.no_grad():
        out = encoder(imgs, masks, 4)
        for b in range(2):
            visible = torch.nonzero(masks[b].flatten() == 0).flatten()
            keep = torch.cat((torch.zeros(1, dtype=torch.long),
                              visible + 1))
            x, _ = encoder.patch_embed(imgs[b:b + 1])
            assert encoder.pos_embed is None  # BEiTViT's default
            x = torch.cat((encoder.cls_token, x), dim=1)[:, keep]
            for layer in encoder.layers:
                attn = layer.attn
                table = attn.relative_position_bias_table[
                    attn.relative_position_index].permute(2, 0, 1)
                stock = copy.deepcopy(layer)
                stock.attn.__class__ = BEiTAttention
                stock.attn.relative_position_bias_table = None
                x = stock(x, table[:, keep][:, :, keep])
            torch.testing.assert_close(out.high_level[b:b + 1], x)
        # the momentum target, on the full grid, is the stock forward
        full = model.target_encoder.encode(imgs).high_level
    stock = MODELS.build(dict(tiny_backbone('BEiTViT'), out_type='raw',
                              final_norm=False))
    stock.load_state_dict(encoder.state_dict(), strict=False)
    stock.eval()
    with torch.no_grad():
        torch.testing.assert_close(full, stock(imgs)[0])


def test_hivit_bias_per_block_follows_the_visible_tokens():
    """HiViT with ``rpe=True`` (its fine-tuning setting): each image's
    visible tokens get each block's bias between exactly their own
    positions (the stock blocks, one image at a time, their index table cut
    to those tokens); the encoder loads strictly into stock HiViT."""
    from mmpretrain.models.backbones.hivit import Attention
    torch.manual_seed(0)
    model = MODELS.build(bootmae_cfg(dict(tiny_backbone('HiViT'), rpe=True)))
    encoder = model.backbone
    encoder.eval()
    g = torch.Generator().manual_seed(5)
    imgs = torch.randn(2, 3, 32, 32, generator=g)
    masks = torch.stack([random_patch_mask(g) for _ in range(2)])
    main = encoder.blocks[-encoder.num_main_blocks:]
    with torch.no_grad():
        out = encoder(imgs, masks, 4)
        for b in range(2):
            visible = torch.nonzero(masks[b].flatten() == 0).flatten()
            x = encoder.patch_embed(imgs[b:b + 1])[:, visible]
            for block in encoder.blocks[:-encoder.num_main_blocks]:
                x = block(x)
            x = x[..., 0, 0, :] + encoder.pos_embed[:, visible]
            for block in main:
                stock = copy.deepcopy(block)
                stock.attn.__class__ = Attention
                index = block.attn.relative_position_index
                stock.attn.relative_position_index = index[visible][:,
                                                                    visible]
                x = stock(x, True)
            torch.testing.assert_close(out.high_level[b:b + 1, 1:], x)
            torch.testing.assert_close(out.high_level[b:b + 1, :1],
                                       x.mean(1, keepdim=True))
    stock = MODELS.build(dict(tiny_backbone('HiViT'), rpe=True))
    assert type(stock.blocks[-1].attn) is Attention
    stock.load_state_dict(encoder.state_dict(), strict=True)


def test_revvit_runs_the_stock_arithmetic_and_leaves_the_rng_alone():
    """The all-patch encoding is stock RevViT's output; a training step
    leaves the global random generator as it would be without RevViT's
    reseeding (two runs from one seed draw the same numbers after it)."""
    torch.manual_seed(0)
    cfg = dict(tiny_backbone('RevVisionTransformer'), drop_path_rate=0.2)
    model = MODELS.build(bootmae_cfg(cfg))
    encoder = model.backbone
    imgs = torch.randn(2, 3, 32, 32)
    g = torch.Generator().manual_seed(6)
    masks = torch.stack([random_patch_mask(g) for _ in range(2)])
    draws = []
    for _ in range(2):
        torch.manual_seed(7)
        encoder(imgs, masks, 4).high_level.sum().backward()
        draws.append(torch.rand(4))
    torch.testing.assert_close(draws[0], draws[1], rtol=0, atol=0)
    # no drop path here: stock RevViT's stays on in eval mode (it builds a
    # new DropPath module, in training mode, at every call)
    encoder = MODELS.build(bootmae_cfg(
        tiny_backbone('RevVisionTransformer'))).backbone
    stock = MODELS.build(dict(tiny_backbone('RevVisionTransformer'),
                              out_type='raw'))
    stock.load_state_dict(encoder.state_dict(), strict=True)
    encoder.eval()
    stock.eval()
    with torch.no_grad():
        torch.testing.assert_close(encoder.encode(imgs).latent,
                                   stock(imgs)[0])
