"""The BootMAE model against docs/method.md: encoder, decoders, losses."""
import numpy as np
import pytest
import torch
from mmpretrain.models import VisionTransformer
from mmpretrain.models.utils import build_2d_sincos_position_embedding
from mmpretrain.registry import MODELS

import bootmae_mm  # noqa: F401
from bootmae_mm.models.heads.bootmae_heads import (
    center_weighted_mask,
    normalize_per_patch,
    patchify,
    weighted_masked_mse,
)
from bootmae_mm.models.utils import sincos_pos_embed
from helpers.bootmae import (
    GRID,
    NUM_MASKED,
    TINY_ARCH,
    data_samples_with_masks,
    random_patch_mask,
    tiny_bootmae_cfg,
)


def build_encoder(**kwargs):
    cfg = dict(type='BootMAEViT', arch=TINY_ARCH, img_size=32, patch_size=8)
    cfg.update(kwargs)
    encoder = MODELS.build(cfg)
    encoder.init_weights()
    encoder.eval()
    return encoder


# --------------------------------------------------------------- encoder
@pytest.mark.parametrize('arch,img_size,patch_size', [
    ('deit-tiny', 56, 14), ('deit-small', 48, 16), ('b', 32, 16),
    (TINY_ARCH, (32, 48), 8)])
def test_encoder_encodes_cls_plus_visible_tokens(arch, img_size, patch_size):
    encoder = build_encoder(arch=arch, img_size=img_size,
                            patch_size=patch_size)
    h, w = encoder.patch_resolution
    num_masked = (h * w * 3) // 4
    g = torch.Generator().manual_seed(0)
    mask = torch.stack([random_patch_mask(g, h, num_masked).view(h, w)
                        if h == w else
                        torch.randperm(h * w, generator=g).lt(num_masked)
                        .view(h, w).float() for _ in range(2)])
    sizes = (img_size, img_size) if isinstance(img_size, int) else img_size
    x = torch.randn(2, 3, *sizes)
    latent, low, high = encoder(x, mask)
    expected = (2, 1 + h * w - num_masked, encoder.embed_dims)
    assert latent.shape == low.shape == high.shape == expected


def test_encoder_taps_and_visible_tokens_match_a_manual_pass():
    encoder = build_encoder()
    g = torch.Generator().manual_seed(1)
    mask = torch.stack([random_patch_mask(g), random_patch_mask(g)])
    x = torch.randn(2, 3, 32, 32)
    latent, low, high = encoder(x, mask)

    # manual: embed, add pos, keep visible (in raster order), prepend cls
    tokens = encoder.patch_embed(x)[0] + encoder.pos_embed[:, 1:]
    for b in range(2):
        visible = tokens[b, ~mask[b].flatten().bool()]
        cls = encoder.cls_token[0] + encoder.pos_embed[0, :1]
        seq = torch.cat([cls, visible])[None]
        outs = []
        for layer in encoder.layers:
            seq = layer(seq)
            outs.append(seq)
        torch.testing.assert_close(low[b], outs[0][0])  # first block
        torch.testing.assert_close(high[b], outs[-1][0])  # last, pre-norm
        torch.testing.assert_close(latent[b], encoder.ln1(outs[-1])[0])
    assert not torch.allclose(high, latent)


def test_position_embedding_is_mmpretrain_sincos():
    encoder = build_encoder()
    expected = build_2d_sincos_position_embedding(GRID, 64, cls_token=True)
    torch.testing.assert_close(encoder.pos_embed.data, expected)
    assert not encoder.pos_embed.requires_grad
    assert torch.all(encoder.pos_embed[0, 0] == 0)  # cls row
    # spec formula: first half follows the row, second half the column
    d, r, c = 64 // 4, 2, 3
    omega = 1. / 10000**(torch.arange(d) / d)
    row = torch.cat([torch.sin(r * omega), torch.cos(r * omega)])
    col = torch.cat([torch.sin(c * omega), torch.cos(c * omega)])
    torch.testing.assert_close(encoder.pos_embed[0, 1 + r * GRID + c],
                               torch.cat([row, col]))
    # non-square grid (2 rows x 3 columns): raster order k = r * W + c
    pe = sincos_pos_embed((2, 3), 64)[0, 1:]
    torch.testing.assert_close(pe[1 * 3 + 2, :32],
                               sincos_pos_embed(4, 64)[0, 1 + 1 * 4, :32])
    torch.testing.assert_close(pe[1 * 3 + 2, 32:],
                               sincos_pos_embed(4, 64)[0, 1 + 2, 32:])


def test_encoder_weights_load_into_stock_vision_transformer():
    encoder = build_encoder()
    stock = VisionTransformer(arch=TINY_ARCH, img_size=32, patch_size=8,
                              out_type='raw')
    stock.eval()
    stock.load_state_dict(encoder.state_dict(), strict=True)
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(encoder(x)[0], stock(x)[0])
    # the full-image encoding equals the stock forward before its final norm
    torch.testing.assert_close(encoder.encode(x).latent, stock(x)[0])


@pytest.mark.parametrize('kwargs,key', [
    (dict(arch='nope'), 'arch'),
    (dict(img_size=30), 'img_size'),
    (dict(low_level_index=7), 'low_level_index')])
def test_encoder_config_errors_name_the_key(kwargs, key):
    with pytest.raises(ValueError, match=key):
        build_encoder(**kwargs)


# ---------------------------------------------------------------- losses
def test_center_weighted_mask_by_hand():
    m = torch.tensor([[1, 1, 0, 0],
                      [1, 1, 0, 1],
                      [0, 0, 0, 0],
                      [0, 0, 0, 0]], dtype=torch.float32)
    w = center_weighted_mask(m[None])[0].view(4, 4)
    # each masked cell: 1 + (masked cells in its zero-padded 3x3) / 9
    assert w[0, 0] == pytest.approx(1 + 4 / 9)
    assert w[1, 1] == pytest.approx(1 + 4 / 9)
    assert w[1, 3] == pytest.approx(1 + 1 / 9)  # isolated
    assert w[2, 2] == 0 and w[0, 2] == 0  # visible cells weigh 0
    full = center_weighted_mask(torch.ones(1, 3, 3))[0].view(3, 3)
    assert full[1, 1] == pytest.approx(2.0)  # surrounded by masked cells


def test_pixel_loss_against_a_hand_computation():
    g = torch.Generator().manual_seed(0)
    imgs = torch.randn(2, 3, 8, 8, generator=g)
    pred = torch.randn(2, 3, 8, 8, generator=g)
    mask = torch.tensor([[[1, 1], [0, 1]], [[0, 0], [1, 0]]]).float()
    head = MODELS.build(dict(type='BootMAEPixelHead', patch_size=4))

    x, p, m = imgs.numpy(), pred.numpy(), mask.numpy()
    total, count = 0.0, 0
    for b in range(2):
        for r in range(2):
            for c in range(2):
                nb = m[b, max(r - 1, 0):r + 2, max(c - 1, 0):c + 2].sum()
                w = m[b, r, c] * (1 + nb / 9)
                for ch in range(3):
                    patch = x[b, ch, 4 * r:4 * r + 4, 4 * c:4 * c + 4]
                    t = (patch - patch.mean()) / np.sqrt(patch.var() + 1e-5)
                    q = p[b, ch, 4 * r:4 * r + 4, 4 * c:4 * c + 4]
                    total += (w * (q - t)**2).sum()
                    count += q.size
    expected = total / count / m.mean()
    assert head.loss(pred, imgs, mask).item() == pytest.approx(expected,
                                                               rel=1e-5)

    # without weight_mask: w = m
    head = MODELS.build(dict(type='BootMAEPixelHead', patch_size=4,
                             weight_mask=False))
    t = normalize_per_patch(patchify(imgs, 4))
    per_patch = ((patchify(pred, 4) - t)**2).mean(dim=(2, 3))
    expected = (per_patch * mask.flatten(1)).mean() / mask.mean()
    assert head.loss(pred, imgs, mask).item() == pytest.approx(
        expected.item(), rel=1e-5)


def test_feature_loss_against_a_hand_computation():
    g = torch.Generator().manual_seed(0)
    pred = torch.randn(1, 4, 6, generator=g) * 3 + 1
    target = torch.randn(1, 4, 6, generator=g) * 2 - 1
    mask = torch.tensor([[[1, 0], [0, 0]]]).float()  # one isolated patch
    head = MODELS.build(dict(type='BootMAEFeatureHead'))

    def ln(v):
        return (v - v.mean()) / np.sqrt(v.var() + 1e-6)

    p, t = pred[0].numpy(), target[0].numpy()
    diff = ((ln(p[0]) - ln(t[0]))**2).mean()  # only patch 0 is masked
    expected = (1 + 1 / 9) * diff / 4 / 0.25  # mean over 4 tokens / mean(m)
    assert head.loss(pred, target, mask).item() == pytest.approx(expected,
                                                                 rel=1e-5)


def test_weighted_masked_mse_normalizes_by_masked_fraction():
    pred = torch.ones(1, 4, 3)
    target = torch.zeros(1, 4, 3)
    mask = torch.tensor([[1., 1., 0., 0.]])
    assert weighted_masked_mse(pred, target, mask, mask).item() == 1.0


# ------------------------------------------------------------- algorithm
def build_model(**overrides):
    model = MODELS.build(tiny_bootmae_cfg(**overrides))
    model.init_weights()
    return model


def tiny_batch(n=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    imgs = torch.randn(n, 3, 32, 32, generator=g)
    masks = [random_patch_mask(g) for _ in range(n)]
    return imgs, data_samples_with_masks(masks)


def test_target_equals_online_after_build_and_is_not_optimized():
    model = build_model()
    online = model.backbone.state_dict()
    target = model.target_encoder.state_dict()
    assert set(target) == set(online) - {'ln1.weight', 'ln1.bias'}
    for name, value in target.items():
        torch.testing.assert_close(value, online[name], rtol=0, atol=0)
    assert not any(n.startswith('target_encoder')
                   for n, _ in model.named_parameters())
    assert any(k.startswith('target_encoder.') for k in model.state_dict())


def test_loss_returns_the_three_terms_and_gradients_flow():
    model = build_model()
    imgs, samples = tiny_batch()
    model.feature_ramp = 0.5
    losses = model.loss(imgs, samples)
    assert set(losses) == {'loss_pixel', 'loss_feature', 'feature_weight'}
    assert losses['feature_weight'].item() == pytest.approx(0.5)
    model.feature_ramp = 1.0
    full = model.loss(imgs, samples)
    torch.testing.assert_close(losses['loss_feature'] * 2,
                               full['loss_feature'])
    (full['loss_pixel'] + full['loss_feature']).backward()
    no_grad = [n for n, p in model.named_parameters()
               if p.requires_grad and p.grad is None]
    assert no_grad == []
    assert all(b.grad is None for b in model.target_encoder.buffers())


def test_key_bias_stays_exactly_zero_after_adamw_steps():
    """The reference's attention has no k bias: the k part of the fused
    qkv bias takes an exactly zero gradient, so AdamW (which turns float
    noise of a ~0 gradient into lr-sized steps) leaves it at 0, in the
    online encoder and in its momentum target; q and v biases train."""
    model = build_model()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2,
                                  weight_decay=0.05)
    g = torch.Generator().manual_seed(1)
    imgs, samples = tiny_batch()
    start = {n: b.clone() for n, b in model.backbone.named_parameters()
             if n.endswith('attn.qkv.bias')}
    assert len(start) == TINY_ARCH['num_layers']
    for _ in range(8):
        imgs = torch.randn(imgs.shape, generator=g)
        losses = model.loss(imgs, samples)
        optimizer.zero_grad()
        (losses['loss_pixel'] + losses['loss_feature']).backward()
        optimizer.step()
        model.update_target(0.5)
    online = dict(model.backbone.named_parameters())
    target = dict(model.target_encoder.named_buffers())
    dims = TINY_ARCH['embed_dims']
    for name in start:
        for bias in (online[name], target[name]):
            assert bias[dims:2 * dims].abs().max().item() == 0, name
            q_moved = (bias[:dims] - start[name][:dims]).abs().max()
            v_moved = (bias[2 * dims:] - start[name][2 * dims:]).abs().max()
            assert q_moved > 1e-3 and v_moved > 1e-3, name


def test_loss_uses_the_momentum_targets_on_the_full_image():
    model = build_model()
    imgs, samples = tiny_batch()
    mask = torch.stack([s.mask for s in samples])
    captured = {}
    head_loss = model.feature_head.loss

    def spy(pred, target, m):
        captured['target'] = target
        return head_loss(pred, target, m)

    model.feature_head.loss = spy
    model.loss(imgs, samples)
    # last block of the target on cls + all patches, pre-norm, cls dropped
    expected = model.target_encoder.encode(imgs).high_level[:, 1:]
    torch.testing.assert_close(captured['target'], expected)
    assert captured['target'].shape == (2, GRID * GRID, 64)
    # the pixel decoder sees the low tap, the feature decoder the high tap
    latent, low, high = model.backbone(imgs, mask)
    pixels = model.pixel_decoder(latent, low, mask)
    assert pixels.shape == imgs.shape
    other = model.pixel_decoder(latent, high, mask)
    assert not torch.allclose(pixels, other)


def test_decoder_keeps_visible_tokens_and_places_mask_tokens():
    model = build_model()
    decoder = model.feature_decoder
    g = torch.Generator().manual_seed(3)
    mask = torch.stack([random_patch_mask(g)])
    latent = torch.randn(1, 1 + GRID * GRID - NUM_MASKED, 64)
    seen = {}
    block = decoder.decoder_blocks[0]

    def record_input(module, args):
        seen['x'] = args[0].clone()

    block.register_forward_pre_hook(record_input)
    decoder(latent, latent, mask)
    x = seen['x'][0]
    projected = decoder.decoder_embed(latent)[0]
    flat = mask.flatten().bool()
    torch.testing.assert_close(x[0], projected[0])  # cls
    torch.testing.assert_close(x[1:][~flat], projected[1:])  # raster order
    expected_masked = decoder.mask_token[0, 0] + \
        decoder.decoder_pos_embed[0, 1:][flat]
    torch.testing.assert_close(x[1:][flat], expected_masked)


def test_num_masking_patches_mismatch_is_reported():
    model = build_model(num_masking_patches=10)
    imgs, samples = tiny_batch()
    with pytest.raises(ValueError, match='num_masking_patches=10'):
        model.loss(imgs, samples)


def test_bad_algorithm_config_is_refused():
    with pytest.raises(ValueError, match='feature_weight'):
        build_model(feature_weight=-1.)
    with pytest.raises(ValueError, match='divisible by 4'):
        MODELS.build(dict(type='BootMAEPixelDecoder', patch_resolution=4,
                          in_dims=64, embed_dims=30, num_heads=2))


def test_pixel_only_variant_has_no_target():
    model = build_model(feature_decoder=None, feature_head=None)
    imgs, samples = tiny_batch()
    assert set(model.loss(imgs, samples)) == {'loss_pixel'}
    assert model.target_encoder is None


def test_pixel_decoder_inner_width_matches_reference_shapes():
    decoder = MODELS.build(dict(type='BootMAEPixelDecoder',
                                patch_resolution=14, in_dims=768,
                                embed_dims=512, num_heads=12))
    shapes = {k: tuple(v.shape) for k, v in decoder.state_dict().items()}
    assert shapes['decoder_blocks.0.attn.q_bias'] == (504, )
    assert shapes['decoder_blocks.0.attn.qkv.weight'] == (1512, 512)
    assert shapes['decoder_blocks.0.cross_attn.kv.weight'] == (1008, 768)
    assert shapes['decoder_pred.weight'] == (512, 3, 16, 16)
    assert 'decoder_pos_embed' not in shapes  # fixed, derived
