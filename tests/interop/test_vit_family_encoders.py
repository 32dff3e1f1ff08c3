"""Every ViT-family backbone of mmpretrain 1.2 as a BootMAE encoder (README
"Mixing with mmpretrain", one row each): ``configs/bootmae_vit-b_800e.py``
with only ``model.backbone`` changed builds and steps at full size on the
meta device; with a tiny arch and real numbers it takes a loss, a backward
and a momentum update, and its saved encoder loads strictly into the stock
class and into the classifier of mmpretrain's own fine-tuning config.
The ViT-family classes that cannot be an encoder are refused with why."""
import copy
import functools
import os.path as osp
import re

import mmpretrain
import pytest
import torch
from mmengine.config import Config
from mmengine.runner.checkpoint import _load_checkpoint_with_prefix
from mmpretrain.registry import MODELS

import bootmae_mm  # noqa: F401
from helpers.bootmae import data_samples_with_masks, random_patch_mask
from helpers.repo import REPO_ROOT

B_CONFIG = osp.join(REPO_ROOT, 'configs', 'bootmae_vit-b_800e.py')
MMPRETRAIN_CONFIGS = osp.join(osp.dirname(mmpretrain.__file__), '.mim',
                              'configs')
VIT = dict(embed_dims=48, num_layers=2, num_heads=3, feedforward_channels=96)
# main stage deeper than the stem: stock HiViT applies out_indices to both
HIVIT = dict(embed_dims=48, depths=[1, 1, 7], num_heads=3)
REV_KEYS = dict(with_cls_token=True, fusion_mode='avg')
MAE_FT = 'mae/benchmarks/vit-base-p16_8xb128-coslr-100e_in1k.py'
HIVIT_FT = 'hivit/hivit-base-p16_16xb64_in1k.py'

# name: (keys the BootMAE config needs besides the type, tiny arch,
#        mmpretrain's fine-tuning config, keys the fine-tuning backbone
#        needs, pattern of the fine-tuning backbone's keys that are new)
ROWS = {
    'VisionTransformer': ({}, VIT, MAE_FT, {}, None),
    'DistilledVisionTransformer': (
        {}, VIT, 'deit/deit-base-distilled_16xb64_in1k.py', {}, None),
    'DeiT3': ({}, VIT, 'deit3/deit3-base-p16_64xb64_in1k.py', {}, None),
    'MAEViT': ({}, VIT, MAE_FT, {}, None),
    'MFFViT': (
        {}, VIT, 'mff/benchmarks/vit-base-p16_8xb128-coslr-100e_in1k.py',
        {}, None),
    'MILANViT': (
        {}, VIT, 'milan/benchmarks/vit-base-p16_8xb128-coslr-100e_in1k.py',
        {}, None),
    'MaskFeatViT': (
        {}, VIT,
        'maskfeat/benchmarks/vit-base-p16_8xb256-coslr-100e_in1k.py', {},
        None),
    'MoCoV3ViT': (
        {}, VIT, 'mocov3/benchmarks/vit-base-p16_8xb64-coslr-150e_in1k.py',
        {}, None),
    'ViTEVA02': (dict(sub_ln=True), VIT, 'eva02/eva02-base-p14_in1k.py', {},
                 None),
    # its default, a bias per block, as BEiT fine-tunes
    'BEiTViT': (
        {}, VIT, 'beit/benchmarks/beit-base-p16_8xb128-coslr-100e_in1k.py',
        {}, None),
    # BEiT's pretraining: a bias shared by the blocks, which the
    # fine-tuning config copies into each block
    'BEiTPretrainViT': (
        {}, VIT, 'beitv2/benchmarks/beit-base-p16_8xb128-coslr-100e_in1k.py',
        {}, r'relative_position_index'),
    # CAE pretrains without a relative bias: the fine-tuning tables are new
    'CAEPretrainViT': (
        dict(layer_scale_init_value=0.1), VIT,
        'cae/benchmarks/beit-base-p16_8xb128-coslr-100e_in1k.py',
        {}, r'relative_position_(bias_table|index)'),
    'RevVisionTransformer': (REV_KEYS, VIT,
                             'revvit/revvit-base_8xb256_in1k.py',
                             dict(with_cls_token=True), None),
    # HiViT's fine-tuning config adds a relative bias per block (rpe=True)
    'HiViT': ({}, HIVIT, HIVIT_FT, {}, r'relative_position'),
    'MAEHiViT': ({}, HIVIT, HIVIT_FT, {}, r'relative_position'),
    'iTPNHiViT': ({}, HIVIT, HIVIT_FT, {}, r'relative_position'),
}


@functools.lru_cache(maxsize=1)
def _b_model_cfg():
    return Config.fromfile(B_CONFIG).model


def bootmae_cfg(backbone=None):
    """The ViT-B config's model, ``backbone`` replacing its backbone."""
    model = copy.deepcopy(_b_model_cfg())
    if backbone is not None:
        model.backbone = backbone
    return model


def tiny_backbone(name):
    keys, arch = ROWS[name][:2]
    return dict(type=name, arch=arch, img_size=32, patch_size=8, **keys)


REFUSED = {
    'ViTSAM': 'windowed attention',
    'T2T_ViT': 'overlapping soft splits',
    'TNT': 'pixel tokens',
    'XCiT': 'convolution over the 2-D grid',
    'Conformer': 'convolution branch',
    'LeViT': 'hierarchical',
    'MixMIMTransformer': 'window attention',
    'MixMIMPretrainTransformer': 'window attention',
}


def test_every_registered_vit_family_class_has_a_tested_readme_row():
    """mmpretrain's registry, not a list: every registered class of a family
    (or of a refused kind) is a row here and in the README table."""
    from bootmae_mm.models.backbones.stock_encoders import (
        FAMILIES,
        NOT_ENCODERS,
    )
    kinds = tuple(FAMILIES) + tuple(NOT_ENCODERS)
    registered = {
        name for name, cls in MODELS.module_dict.items()
        if isinstance(cls, type) and issubclass(cls, kinds)
        and cls.__module__.startswith('mmpretrain.')}
    assert registered == set(ROWS) | set(REFUSED)
    with open(osp.join(REPO_ROOT, 'README.md')) as f:
        readme = f.read()
    table = readme[readme.index('| backbone | works |'):]
    for name in registered:
        assert f'`{name}`' in table, name


@pytest.mark.parametrize('name', list(ROWS))
def test_backbone_pretrains_from_the_vit_b_config_at_full_size_on_meta(name):
    """The README's command: the ViT-B config, only ``model.backbone.type``
    changed (and the keys of the row), full size, shapes only."""
    model_cfg = bootmae_cfg()
    model_cfg.backbone.type = name
    model_cfg.backbone.update(ROWS[name][0])
    if 'HiViT' in name:  # draws its drop-path rates with .item()
        model = MODELS.build(model_cfg).to('meta')
    with torch.device('meta'):
        if 'HiViT' not in name:
            model = MODELS.build(model_cfg)
        losses = model._losses(torch.randn(2, 3, 224, 224),
                               torch.zeros(2, 14, 14, dtype=torch.bool), 49)
        (losses['loss_pixel'] + losses['loss_feature']).backward()
    assert isinstance(model.backbone, MODELS.get(name))
    assert model.backbone.patch_embed.proj.weight.grad is not None \
        if 'HiViT' in name else \
        model.backbone.patch_embed.projection.weight.grad is not None
    width = model.backbone.embed_dims
    assert model.feature_decoder.decoder_pred.out_features == width


@pytest.mark.parametrize('name', list(ROWS))
def test_backbone_pretrains_loads_into_stock_and_fine_tunes(name, tmp_path):
    torch.manual_seed(0)
    model_cfg = bootmae_cfg(tiny_backbone(name))
    model_cfg.update(data_preprocessor=None, num_masking_patches=12)
    model = MODELS.build(model_cfg)
    model.init_weights()
    g = torch.Generator().manual_seed(1)
    imgs = torch.randn(2, 3, 32, 32, generator=g)
    masks = torch.stack([random_patch_mask(g) for _ in range(2)])
    losses = model.loss(imgs, data_samples_with_masks(masks))
    total = losses['loss_pixel'] + losses['loss_feature']
    assert torch.isfinite(total)
    total.backward()
    online = dict(model.backbone.named_parameters())
    trained = [k for k, p in online.items() if p.requires_grad]
    # every trained tensor gets a gradient (what runs is what trains)
    assert all(online[k].grad is not None for k in trained), [
        k for k in trained if online[k].grad is None]

    # one SGD step, then the EMA update of the momentum target
    target = dict(model.target_encoder.named_buffers())
    key = [k for k in trained if k.endswith('qkv.weight')][-1]
    torch.testing.assert_close(target[key], online[key].detach(),
                               rtol=0, atol=0)
    torch.optim.SGD([online[k] for k in trained], lr=1.).step()
    before = target[key].clone()
    assert not torch.equal(before, online[key])
    model.update_target(0.9)
    torch.testing.assert_close(target[key],
                               0.9 * before + 0.1 * online[key].detach())

    # save; the encoder loads strictly into the stock class
    ckpt = tmp_path / 'pretrain.pth'
    torch.save(dict(state_dict=model.state_dict()), ckpt)
    state = _load_checkpoint_with_prefix('backbone.', str(ckpt))
    stock = MODELS.build(tiny_backbone(name))
    assert type(stock) is MODELS.get(name)
    stock.load_state_dict(state, strict=True)
    ours = model.backbone.state_dict()
    assert stock.state_dict().keys() == ours.keys()
    for k, v in stock.state_dict().items():
        assert torch.equal(v, ours[k]), k

    # mmpretrain's own fine-tuning config, at the tiny size
    ft_path, ft_keys, new_keys = ROWS[name][2:]
    ft = Config.fromfile(osp.join(MMPRETRAIN_CONFIGS, ft_path)).model
    ft.backbone.update(arch=ROWS[name][1], img_size=32, patch_size=8,
                       init_cfg=None, **ft_keys)
    ft.head.update(num_classes=5, in_channels=None)
    ft.head.in_channels = 2 * 48 if name == 'RevVisionTransformer' else 48
    ft.pop('train_cfg', None)
    classifier = MODELS.build(ft)
    missing, _ = classifier.backbone.load_state_dict(state, strict=False)
    # what the fine-tuning backbone has beyond the pretrained encoder: its
    # new norm of the pooled tokens, and the named relative position parts
    new = re.compile(r'^ln2\.' + (f'|{new_keys}' if new_keys else ''))
    assert all(new.search(k) for k in missing), missing
    loaded = classifier.backbone.state_dict()
    for k in set(loaded) & set(state):
        if 'relative_position_bias_table' not in k:
            assert torch.equal(loaded[k], state[k]), k
    classifier.eval()
    with torch.no_grad():
        logits = classifier(imgs, mode='tensor')
    assert logits.shape == (2, 5) and torch.isfinite(logits).all()


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
    masks = torch.stack([random_patch_mask(torch.Generator().manual_seed(6))
                         for _ in range(2)])
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


@pytest.mark.parametrize('backbone,words', [
    (dict(type='RevVisionTransformer'), "model.backbone.with_cls_token=False"
     ", fusion_mode='concat'"),
    (dict(type='RevVisionTransformer', with_cls_token=True),
     "set fusion_mode='avg'"),
    (dict(type='CAEPretrainViT'), 'set layer_scale_init_value=0.1'),
    (dict(type='ViTEVA02', with_cls_token=False, out_type='avg_featmap'),
     'set with_cls_token=True'),
])
def test_defaults_that_cannot_work_name_the_key_and_the_value(backbone,
                                                              words):
    arch = HIVIT if 'HiViT' in backbone['type'] else VIT
    cfg = dict(backbone, arch=arch, img_size=32, patch_size=8)
    with pytest.raises(ValueError) as err:
        MODELS.build(bootmae_cfg(cfg))
    assert words in str(err.value), str(err.value)


@pytest.mark.parametrize('name,why', list(REFUSED.items()))
def test_a_vit_family_backbone_that_cannot_be_an_encoder_says_why(name, why):
    with pytest.raises(TypeError) as err:
        MODELS.build(bootmae_cfg(dict(type=name)))
    message = str(err.value)
    assert f'model.backbone.type={name}: cannot be a BootMAE encoder' in \
        message and why in message, message
