"""A fresh BootMAE starts from the reference's initialization
(docs/method.md section 2b), tensor by tensor against the reference's
init re-implemented in tests/helpers/reference_bootmae.py; the momentum target
starts as an exact copy; a checkpoint given as init_cfg still wins."""
import math

import pytest
import torch
from mmpretrain.registry import MODELS

import bootmae_mm  # noqa: F401
from bootmae_mm.interop.reference_mapping import bootmae_to_reference
from helpers.bootmae import tiny_bootmae_cfg
from helpers.reference_bootmae import ReferenceBootMAE, reference_init_

# wide enough for the sample std of every weight to be tight (the smallest
# random tensors, cls and mask tokens, still have 100+ values); 3 heads of
# a 100-wide pixel decoder: inner width 99 != 100, as ViT-B's 504 != 512
SIZE = dict(img_size=64, patch_size=16, dim=192, depth=2, heads=3,
            decode_dim=100)
# standard errors allowed between two samples of the same distribution:
# with ~150 compared tensors a 5-sigma miss by chance is < 1e-4 likely
Z = 5.0


def bootmae_cfg(size=SIZE):
    grid = size['img_size'] // size['patch_size']
    d, h, p = size['dim'], size['heads'], size['patch_size']
    return dict(
        type='BootMAE',
        backbone=dict(type='BootMAEViT', img_size=size['img_size'],
                      patch_size=p,
                      arch=dict(embed_dims=d, num_layers=size['depth'],
                                num_heads=h, feedforward_channels=4 * d)),
        pixel_decoder=dict(type='BootMAEPixelDecoder', patch_resolution=grid,
                           patch_size=p, in_dims=d,
                           embed_dims=size['decode_dim'], depth=2,
                           num_heads=h),
        pixel_head=dict(type='BootMAEPixelHead', patch_size=p),
        feature_decoder=dict(type='BootMAEFeatureDecoder',
                             patch_resolution=grid, in_dims=d, depth=2,
                             num_heads=h),
        feature_head=dict(type='BootMAEFeatureHead'))


def assert_same_distribution(ours, ref, name):
    """Two independent draws of one distribution: equal means and stds
    within Z standard errors. The standard error of a sample std is
    sigma * sqrt((kurtosis - 1) / (4 n)) (kurtosis 1.8 for a uniform, 3
    for a normal, read off the reference sample); of a mean sigma /
    sqrt(n); the difference of two draws has sqrt(2) times that."""
    ours, ref = ours.double().flatten(), ref.double().flatten()
    n = ref.numel()
    sigma = ref.std(unbiased=False)
    kurtosis = ((ref - ref.mean())**4).mean() / sigma**4
    std_tol = Z * sigma * math.sqrt(2 * (kurtosis - 1) / (4 * n))
    mean_tol = Z * sigma * math.sqrt(2 / n)
    got = ours.std(unbiased=False)
    assert abs(got - sigma) <= std_tol, (
        f'{name}: std {got:.3g}, reference {sigma:.3g} (+-{std_tol:.2g})')
    assert abs(ours.mean() - ref.mean()) <= mean_tol, (
        f'{name}: mean {ours.mean():.3g}, reference {ref.mean():.3g}')


def test_fresh_model_has_the_reference_init_tensor_by_tensor():
    torch.manual_seed(0)
    model = MODELS.build(bootmae_cfg())
    model.init_weights()
    torch.manual_seed(1)
    ref = reference_init_(ReferenceBootMAE(**SIZE)).state_dict()
    ours, _ = bootmae_to_reference(model.state_dict())
    assert set(ours) == set(ref)
    # the k part of the encoder qkv bias (no reference name) is zero too
    for i in range(SIZE['depth']):
        assert not model.backbone.layers[i].attn.qkv.bias.any()

    random_names = []
    for name, r in ref.items():
        o = ours[name]
        assert o.shape == r.shape, name
        if name.endswith('pos_embed'):  # fixed sin-cos tables
            torch.testing.assert_close(o, r, msg=name)
        elif bool((r == r.flatten()[0]).all()):  # zeros, LayerNorm ones
            assert torch.equal(o, r), f'{name}: expected all {r.flatten()[0]}'
        elif name == 'lm_head.proj.bias':
            # 3 values: too few for a std; PyTorch's default for the
            # transposed conv, uniform in +-1 / sqrt(3 p p), in both
            bound = 1 / math.sqrt(3 * SIZE['patch_size']**2)
            assert o.any() and o.abs().max() <= bound, name
            random_names.append(name)
        elif name.endswith('qkv.weight'):  # each q / k / v part alone
            for part, (po, pr) in enumerate(zip(o.chunk(3), r.chunk(3))):
                assert_same_distribution(po, pr, f'{name} part {part}')
            random_names.append(name)
        else:
            assert_same_distribution(o, r, name)
            random_names.append(name)
    # what the reference draws at random: every Linear / conv weight, the
    # tokens, the transposed conv's bias; every other tensor is constant
    assert {'cls_token', 'mask_token', 'mask_token_1', 'lm_head.proj.bias',
            'patch_embed.proj.weight', 'blocks.1.attn.qkv.weight',
            'decode_blocks.0.c_attn.kv.weight'} <= set(random_names)
    assert not any(n.endswith(('_bias', '.bias')) for n in random_names
                   if n != 'lm_head.proj.bias')
    # the spreads that set the reference apart from mmpretrain's ViT init
    qkv = model.backbone.layers[0].attn.qkv.weight
    d = SIZE['dim']
    assert qkv.abs().max() <= math.sqrt(6 / (d + d))
    assert model.backbone.cls_token.abs().max() < 1e-5
    assert model.feature_decoder.mask_token.abs().max() <= 0.02


def test_target_starts_as_a_copy_of_the_initialized_encoder():
    torch.manual_seed(0)
    model = MODELS.build(tiny_bootmae_cfg())
    model.init_weights()
    online = model.backbone.state_dict()
    target = model.target_encoder.state_dict()
    assert set(target) <= set(online)
    for name, value in target.items():
        assert torch.equal(value, online[name]), name
    # the encoder's init ran (reference cls token, not mmpretrain's 0.02)
    assert 0 < model.backbone.cls_token.abs().max() < 1e-5


@pytest.mark.parametrize('where', ['model', 'backbone'])
def test_checkpoint_in_init_cfg_wins_over_the_fresh_init(where, tmp_path):
    torch.manual_seed(0)
    trained = MODELS.build(tiny_bootmae_cfg())
    trained.init_weights()
    with torch.no_grad():
        for p in trained.parameters():
            p.add_(torch.randn_like(p))
    path = str(tmp_path / 'trained.pth')
    if where == 'model':
        torch.save({'state_dict': trained.state_dict()}, path)
        cfg = tiny_bootmae_cfg(init_cfg=dict(type='Pretrained',
                                           checkpoint=path))
    else:
        torch.save({'state_dict': trained.backbone.state_dict()}, path)
        cfg = tiny_bootmae_cfg()
        cfg['backbone'] = dict(cfg['backbone'], init_cfg=dict(
            type='Pretrained', checkpoint=path))
    torch.manual_seed(1)
    model = MODELS.build(cfg)
    model.init_weights()
    expected = trained.state_dict()
    for name, value in model.backbone.state_dict().items():
        assert torch.equal(value, expected['backbone.' + name]), name
    if where == 'model':
        for name, value in model.state_dict().items():
            assert torch.equal(value, expected[name]), name
