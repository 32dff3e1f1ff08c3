"""Both decoders and the pixel head follow the built encoder: every ViT arch
of mmpretrain's zoo pretrains with only ``model.backbone.arch`` changed in
the ViT-B config; a decoder value that cannot work is refused naming its
config key."""
import copy

import pytest
import torch
from mmengine.config import Config
from mmpretrain.models import VisionTransformer
from mmpretrain.registry import MODELS

import bootmae_mm  # noqa: F401
from helpers.bootmae import data_samples_with_masks, random_patch_mask
from helpers.demo_pretrain import write_tiny_demo_config
from helpers.repo import load_tool
from helpers.tiny_pretrain import PRETRAIN_CONFIG

ARCHS = ['deit-tiny', 'deit-small', 'deit-base', 's', 'b', 'l', 'h']


def b_model(arch):
    """The ViT-B pretraining model config with only the arch changed."""
    model = copy.deepcopy(Config.fromfile(PRETRAIN_CONFIG).model)
    model.backbone.arch = arch
    return model


def check_follows(model, arch):
    zoo = VisionTransformer.arch_zoo[arch] if isinstance(arch, str) else arch
    width, heads = zoo['embed_dims'], zoo['num_heads']
    for decoder in (model.pixel_decoder, model.feature_decoder):
        assert decoder.decoder_embed.in_features == width
        assert decoder.patch_resolution == (14, 14)
        block = decoder.decoder_blocks[0]
        assert block.attn.num_heads == heads
        assert block.norm4.normalized_shape == (width, )  # context = tap
    assert model.pixel_decoder.decoder_embed.out_features == 512
    # the feature decoder is as wide as its target, the encoder's features
    assert model.feature_decoder.decoder_embed.out_features == width
    assert model.feature_decoder.decoder_pred.out_features == width
    assert model.pixel_decoder.decoder_pred.kernel_size == (16, 16)
    assert model.pixel_head.patch_size == 16


@pytest.mark.parametrize('arch', ARCHS)
def test_every_zoo_arch_pretrains_at_full_size_on_meta(arch):
    """The full-depth model of each arch (ViT-H: 632 M parameters) on the
    meta device: shapes only, no memory. Before the decoders followed the
    encoder, every arch not 768 wide failed here with mismatched shapes."""
    with torch.device('meta'):
        model = MODELS.build(b_model(arch))
        check_follows(model, arch)
        imgs = torch.randn(2, 3, 224, 224)
        mask = torch.zeros(2, 14, 14, dtype=torch.bool)
        losses = model.tensor_losses(imgs, mask, 196 - 147)
        (losses['loss_pixel'] + losses['loss_feature']).backward()
    grad = model.backbone.patch_embed.projection.weight.grad
    assert grad is not None and grad.shape == (
        VisionTransformer.arch_zoo[arch]['embed_dims'], 3, 16, 16)
    assert model.target_encoder.layers[-1].ln1.weight.shape == \
        model.backbone.layers[-1].ln1.weight.shape


@pytest.mark.parametrize('arch', ARCHS + ['dict'])
def test_every_zoo_arch_pretrains_one_block_deep(arch):
    """Real numbers: each arch's width and heads at one block deep (a dict
    arch from the zoo's settings), one loss + backward + momentum update
    on 224 px images."""
    settings = dict(embed_dims=96, num_heads=3, feedforward_channels=192) \
        if arch == 'dict' else VisionTransformer.arch_zoo[arch]
    settings = dict(settings, num_layers=1)
    model = MODELS.build(b_model(settings))
    check_follows(model, settings)
    g = torch.Generator().manual_seed(0)
    imgs = torch.randn(2, 3, 224, 224, generator=g)
    masks = torch.stack([random_patch_mask(g, grid=14, num_masked=147)
                         for _ in range(2)])
    losses = model.loss(imgs, data_samples_with_masks(masks))
    total = losses['loss_pixel'] + losses['loss_feature']
    assert torch.isfinite(total)
    total.backward()
    online = model.backbone.layers[0].attn.qkv.weight
    assert online.grad.abs().sum() > 0
    with torch.no_grad():
        online.add_(1.)
    before = model.target_encoder.layers[0].attn.qkv.weight.clone()
    model.update_target(0.75)
    torch.testing.assert_close(
        model.target_encoder.layers[0].attn.qkv.weight,
        0.75 * before + 0.25 * online.detach())


def tiny_model(**changes):
    """A 48-wide, 3-head, 2-block encoder on 32 px (4 x 4 patches of 8)."""
    model = b_model(dict(embed_dims=48, num_layers=2, num_heads=3,
                         feedforward_channels=96))
    model.backbone.update(img_size=32, patch_size=8)
    for key, value in changes.items():
        part, name = key.split('.')
        model[part][name] = value
    return model


def test_explicit_values_that_work_win():
    model = MODELS.build(tiny_model(**{
        'pixel_decoder.num_heads': 4, 'pixel_decoder.embed_dims': 64,
        'feature_decoder.embed_dims': 32, 'feature_decoder.num_heads': 2,
        'pixel_decoder.in_dims': 48, 'pixel_head.patch_size': 8}))
    assert model.pixel_decoder.decoder_blocks[0].attn.num_heads == 4
    assert model.pixel_decoder.decoder_embed.out_features == 64
    assert model.feature_decoder.decoder_embed.out_features == 32
    assert model.feature_decoder.decoder_blocks[0].attn.num_heads == 2
    # the prediction is still one encoder-wide feature per patch
    assert model.feature_decoder.decoder_pred.out_features == 48


@pytest.mark.parametrize('key,value,words', [
    ('pixel_decoder.in_dims', 768, 'its width is 48'),
    ('feature_decoder.in_dims', 768, 'its width is 48'),
    ('pixel_decoder.context_dims', 64, 'its taps are 48'),
    ('feature_decoder.out_dims', 64, 'the target features are 48'),
    ('pixel_decoder.patch_resolution', 14, 'its patch grid is (4, 4)'),
    ('feature_decoder.patch_resolution', (4, 2), 'its patch grid is'),
    ('pixel_decoder.patch_size', 16, 'its patch size is 8'),
    ('pixel_head.patch_size', 16, 'its patch size is 8'),
    ('pixel_decoder.num_heads', 0, 'cannot split the decoder width 512'),
    ('feature_decoder.num_heads', 49, 'cannot split the decoder width 48'),
])
def test_a_decoder_value_that_cannot_work_is_refused(key, value, words):
    with pytest.raises(ValueError) as err:
        MODELS.build(tiny_model(**{key: value}))
    msg = str(err.value)
    assert msg.startswith(f'model.{key}={value!r}'), msg
    assert words in msg, msg


def test_train_tool_names_the_decoder_key(tmp_path):
    """A decoder width written out in the config (32) that a wider encoder
    given through --cfg-options no longer fits is refused before any step,
    naming the decoder key to drop."""
    config = write_tiny_demo_config(tmp_path / 'tiny.py', tmp_path / 'data',
                               num_workers=0, persistent=False,
                               max_epochs=1)
    work_dir = tmp_path / 'work'
    with pytest.raises(ValueError) as err:
        load_tool('tools/train.py').main([
            config, '--work-dir', str(work_dir), '--cfg-options',
            'model.backbone.arch.embed_dims=48',
            'model.pixel_decoder.in_dims=32'])
    msg = str(err.value)
    assert msg.startswith('model.pixel_decoder.in_dims=32 does not fit the '
                          'encoder (its width is 48'), msg
    assert not list(work_dir.glob('*.pth'))
