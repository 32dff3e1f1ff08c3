"""projects/bootmae_ablations: the paper's ablation configs and stock MAE +
our momentum target build (tiny arch) and train one step on CPU."""
import importlib
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample

import bootmae_mm  # noqa: F401
from helpers.bootmae import (
    GRID,
    NUM_MASKED,
    TINY_ARCH,
    data_samples_with_masks,
)
from helpers.repo import REPO_ROOT

CFG_DIR = osp.join(REPO_ROOT, 'projects', 'bootmae_ablations', 'configs')


def load(name):
    return Config.fromfile(osp.join(CFG_DIR, name))


def tiny_bootmae(model):
    """Shrink a BootMAE model config to 64 wide, 32 px, 4 x 4 patches."""
    model.backbone.update(arch=TINY_ARCH, img_size=32, patch_size=8)
    model.pixel_decoder.update(patch_resolution=GRID, patch_size=8,
                               in_dims=64, embed_dims=32, num_heads=2)
    model.pixel_head.update(patch_size=8)
    if model.feature_decoder is not None:
        model.feature_decoder.update(patch_resolution=GRID, in_dims=64,
                                     num_heads=2)
    model.num_masking_patches = NUM_MASKED
    return model


def one_step(model):
    g = torch.Generator().manual_seed(0)
    imgs = torch.randn(2, 3, 32, 32, generator=g)
    masks = torch.zeros(2, GRID * GRID)
    for m in masks:
        m[torch.randperm(GRID * GRID, generator=g)[:NUM_MASKED]] = 1
    losses = model.loss(
        imgs, data_samples_with_masks(masks.view(2, GRID, GRID)))
    total = sum(v for k, v in losses.items() if k.startswith('loss'))
    total.backward()
    assert torch.isfinite(total)
    assert model.backbone.patch_embed.projection.weight.grad is not None
    return losses


def hook_types(cfg):
    return [h['type'] for h in cfg.get('custom_hooks', [])]


@pytest.mark.parametrize('name,feature,cross', [
    ('bootmae-ablation1_pixel-only_vit-b_800e.py', False, False),
    ('bootmae-ablation2_momentum-target_vit-b_800e.py', True, False),
    ('bootmae-ablation3_target-aware_vit-b_800e.py', True, True),
])
def test_ablation_configs(name, feature, cross):
    cfg = load(name)
    # the real recipe behind each config
    assert cfg.model.backbone.arch == 'b'
    assert 'BootMAEMaskGenerator' in cfg.pretty_text  # the same masking
    assert ('MomentumTargetHook' in hook_types(cfg)) == feature
    assert ('FeatureWeightRampHook' in hook_types(cfg)) == feature

    model = MODELS.build(tiny_bootmae(cfg.model))
    model.init_weights()
    assert model.with_target == feature
    blocks = list(model.pixel_decoder.decoder_blocks)
    if feature:
        blocks += list(model.feature_decoder.decoder_blocks)
    assert all(hasattr(b, 'cross_attn') == cross for b in blocks)
    losses = one_step(model)
    assert ('loss_feature' in losses) == feature
    if feature:  # the target never takes gradients
        assert not any(True for _ in model.target_encoder.parameters())


def test_mae_with_momentum_target_composes():
    cfg = load('mae-momentum-target_vit-b_800e.py')
    assert cfg.model.type == 'MAEWithMomentumTarget'
    assert 'MomentumTargetHook' in hook_types(cfg)
    for mod in cfg.custom_imports.imports:
        importlib.import_module(mod)  # as the Runner does
    model_cfg = cfg.model
    model_cfg.backbone.update(arch=TINY_ARCH, img_size=32, patch_size=8)
    model_cfg.neck.update(num_patches=16, patch_size=8, embed_dim=64,
                          decoder_embed_dim=32, decoder_depth=1,
                          decoder_num_heads=2)
    model_cfg.head.update(patch_size=8)
    model_cfg.feature_decoder.update(patch_resolution=GRID, in_dims=64,
                                     num_heads=2, depth=1)
    model = MODELS.build(model_cfg)
    model.init_weights()
    assert type(model.backbone).__name__ == 'MAEViT'
    assert type(model.neck).__name__ == 'MAEPretrainDecoder'
    assert type(model.head).__name__ == 'MAEPretrainHead'
    online = model.backbone.layers[0].attn.qkv.weight
    target = model.target_encoder.layers[0].attn.qkv.weight
    assert torch.equal(online, target)  # target starts as a copy

    imgs = torch.randn(2, 3, 32, 32)
    losses = model.loss(imgs, [DataSample(), DataSample()])  # MAE masks
    assert set(losses) == {'loss', 'loss_feature'}
    (losses['loss'] + losses['loss_feature']).backward()
    assert model.feature_decoder.decoder_pred.weight.grad is not None

    # an optimizer step, then the hook's update: target = d*t + (1-d)*o
    before = target.clone()
    torch.optim.SGD(model.parameters(), lr=1.0).step()
    assert not torch.equal(online, before)
    model.update_target(0.75)
    torch.testing.assert_close(target, 0.75 * before + 0.25 * online.detach())
    assert model.with_target
    model.train()
    assert not model.target_encoder.training
