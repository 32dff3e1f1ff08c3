"""The exporters take the architecture a checkpoint records (its saved
config, ``meta['cfg']``) or the head count given with ``--num-heads``, and
never guess it: exported mmpretrain and timm models (pretrained online
and momentum target encoders, fine-tuned classifiers) equal our model, for
head counts that are not width / 64; a checkpoint that records no head
count is refused without ``--num-heads``."""
import ast
import copy
import os.path as osp
import re

import pytest
import torch
from mmengine.config import Config
from mmpretrain.models import VisionTransformer
from mmpretrain.registry import MODELS

import bootmae_mm  # noqa: F401
from helpers.bootmae import tiny_bootmae_cfg
from helpers.repo import REPO_ROOT, load_tool

FT_B = osp.join(REPO_ROOT, 'configs/finetune/bootmae_vit-b_ft-100e_in1k.py')
# width 64 with 4 heads: the old width // 64 guess was 1
ARCH_4_HEADS = dict(embed_dims=64, num_layers=3, num_heads=4,
                    feedforward_channels=128)
# a dict arch with 3 heads of 32 channels (guess: 1)
DICT_ARCH = dict(embed_dims=96, num_layers=2, num_heads=3,
                 feedforward_channels=192)
# float32, identical operations in another order: rounding only
ATOL = 1e-5


def _tool(name):
    return load_tool(f'tools/model_converters/{name}.py')


def _perturb(model, seed):
    """Random weights everywhere (LayerNorms included; not the fixed sin-cos
    position embeddings), so that any wrong head count, norm or pooling
    shows in the outputs."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict(keep_vars=True).items():
            if t.is_floating_point() and not name.endswith('pos_embed'):
                t.add_(0.05 * torch.randn(t.shape, generator=g))


def _save(model, cfg, path):
    """As a Runner saves: the state dict and the config's text."""
    torch.save({'state_dict': model.state_dict(),
                'meta': {'cfg': cfg.pretty_text}}, str(path))
    return str(path)


@pytest.fixture(scope='module')
def pretrained_4_heads(tmp_path_factory):
    """A tiny BootMAE pretraining checkpoint of a 4-head, 64-wide
    encoder."""
    model_cfg = tiny_bootmae_cfg()
    model_cfg['backbone'] = dict(model_cfg['backbone'], arch=ARCH_4_HEADS)
    cfg = Config(dict(model=model_cfg, default_scope='mmpretrain',
                      custom_imports=dict(imports=['bootmae_mm'])))
    model = MODELS.build(copy.deepcopy(cfg.model))
    model.init_weights()
    _perturb(model, 0)
    path = tmp_path_factory.mktemp('pt') / 'bootmae_4heads.pth'
    return _save(model, cfg, path), model


def _finetuned(tmp_path_factory, arch, patch_size, name):
    """A fine-tuned classifier checkpoint of our fine-tuning config."""
    cfg = Config.fromfile(FT_B)
    cfg.model.backbone.update(arch=arch, img_size=32, patch_size=patch_size,
                              init_cfg=None)
    width = arch['embed_dims'] if isinstance(arch, dict) else 768
    cfg.model.head.update(num_classes=5, in_channels=width)
    model = MODELS.build(copy.deepcopy(cfg.model))
    model.init_weights()
    _perturb(model, 1)
    return _save(model, cfg, tmp_path_factory.mktemp('ft') / name), model


@pytest.fixture(scope='module')
def finetuned_s(tmp_path_factory):
    """mmpretrain's arch 's': 768 wide, 8 heads (guess: 12)."""
    return _finetuned(tmp_path_factory, 's', 16, 'ft_s.pth')


@pytest.fixture(scope='module')
def finetuned_dict(tmp_path_factory):
    return _finetuned(tmp_path_factory, DICT_ARCH, 8, 'ft_dict.pth')


# a case named '<fixture>_bare' is that checkpoint without its saved
# config, exported with '--num-heads'
CASES = [('pretrained_4_heads', 'online'), ('pretrained_4_heads', 'target'),
         ('finetuned_s', 'online'), ('finetuned_dict', 'online'),
         ('pretrained_4_heads_bare', 'online'),
         ('pretrained_4_heads_bare', 'target'),
         ('finetuned_dict_bare', 'online')]
# the true architecture of each case, as the test knows it
TRUE = dict(
    pretrained_4_heads=dict(arch=ARCH_4_HEADS, patch_size=8, heads=4),
    finetuned_s=dict(arch='s', patch_size=16, heads=8),
    finetuned_dict=dict(arch=DICT_ARCH, patch_size=8, heads=3))


def _case(case, request, tmp_path):
    """The checkpoint, our model, its true architecture and the exporter's
    extra arguments for ``case``."""
    name = case[:-len('_bare')] if case.endswith('_bare') else case
    (src, model), true = request.getfixturevalue(name), TRUE[name]
    if name == case:
        return src, model, true, []
    bare = str(tmp_path / f'{name}_no_meta.pth')
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, bare)
    return bare, model, true, ['--num-heads', str(true['heads'])]


def _ours(model, source):
    encoder = model.backbone if source == 'online' else model.target_encoder
    encoder.eval()
    return encoder


@pytest.mark.parametrize('case,source', CASES)
def test_export_to_mmpretrain_matches_ours(case, source, request, tmp_path):
    src, model, true, extra = _case(case, request, tmp_path)
    dst = str(tmp_path / 'vit.pth')
    assert _tool('bootmae_to_vit').main(
        [src, dst, '--source', source] + extra) == 0
    saved = torch.load(dst, weights_only=True)
    ours = _ours(model, source)
    # built as a user does, from the arguments the export records
    vit = VisionTransformer(**saved['meta']['vit_kwargs'])
    saved = saved['state_dict']
    vit.load_state_dict({k[len('backbone.'):]: v for k, v in saved.items()
                         if k.startswith('backbone.')}, strict=True)
    vit.eval()
    assert vit.layers[0].attn.num_heads == true['heads']
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        diff = (vit(x)[0] - ours(x)[0]).abs().max().item()
    assert diff <= ATOL
    assert ('head.fc.weight' in saved) == case.startswith('finetuned')


@pytest.mark.parametrize('case,source', CASES)
def test_export_to_timm_matches_ours(case, source, request, tmp_path,
                                     capsys):
    import timm
    src, model, true, extra = _case(case, request, tmp_path)
    dst = str(tmp_path / 'timm.pth')
    assert _tool('bootmae_to_timm').main(
        [src, dst, '--source', source] + extra) == 0
    # built as a user does, with the create_model call the tool prints
    line = capsys.readouterr().out.strip().splitlines()[-1]
    name, kwargs = re.search(r"create_model\('(\S+)', pretrained=False, "
                             r'\*\*(\{.*\})\); outputs match', line).groups()
    kwargs = ast.literal_eval(kwargs)
    assert kwargs['num_heads'] == true['heads']
    theirs = timm.create_model(name, pretrained=False, **kwargs)
    state = torch.load(dst, weights_only=True)
    ours = _ours(model, source)
    pooled = ours.out_type == 'avg_featmap'
    theirs.load_state_dict(state, strict=True)
    theirs.eval()
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        tokens = theirs.forward_features(x)
        assert (tokens - ours.encode(x)[0]).abs().max() <= ATOL
        if pooled:  # the classifier's logits too
            model.eval()
            logits = model(x, mode='tensor')
            assert (theirs(x) - logits).abs().max() <= ATOL


@pytest.mark.parametrize('tool', ['bootmae_to_vit', 'bootmae_to_timm'])
def test_export_refuses_to_guess_the_head_count(tool, pretrained_4_heads,
                                                tmp_path):
    src, model = pretrained_4_heads
    bare = str(tmp_path / 'no_meta.pth')
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, bare)
    dst = tmp_path / 'out.pth'
    with pytest.raises(SystemExit) as err:
        _tool(tool).main([bare, str(dst)])
    assert 'no_meta.pth' in str(err.value)
    assert '--num-heads' in str(err.value)
    assert not dst.exists()
    # a head count that contradicts the saved config is refused too
    with pytest.raises(SystemExit, match='4 heads'):
        _tool(tool).main([src, str(dst), '--num-heads', '1'])
    assert not dst.exists()
    # given, it is used (the '_bare' cases above compare the outputs)
    assert _tool(tool).main([bare, str(dst), '--num-heads', '4']) == 0


def test_export_of_a_reference_checkpoint_takes_its_args(tmp_path):
    """A reference checkpoint records its model by name (``args.model``):
    'bootmae_base' has 12 heads. Without ``args`` it is refused."""
    import argparse

    from bootmae_mm.interop.reference_mapping import bootmae_to_reference
    arch = dict(embed_dims=768, num_layers=1, num_heads=12,
                feedforward_channels=256)
    model_cfg = tiny_bootmae_cfg()
    model_cfg['backbone'] = dict(model_cfg['backbone'], arch=arch,
                                 patch_size=16)
    for name in ('pixel_decoder', 'feature_decoder'):
        model_cfg[name] = dict(model_cfg[name], in_dims=768,
                               patch_resolution=2, depth=1)
    model_cfg['pixel_decoder']['patch_size'] = 16
    model_cfg['pixel_head'] = dict(model_cfg['pixel_head'], patch_size=16)
    model = MODELS.build(model_cfg)
    model.init_weights()
    _perturb(model, 2)
    with torch.no_grad():  # the reference has no k bias
        for layer in model.backbone.layers:
            layer.attn.qkv.bias[768:1536] = 0
    ref, ema = bootmae_to_reference(model.state_dict())
    src = str(tmp_path / 'BootMAE_Base_PT.pth')
    torch.save({'model': ref, 'model_ema': ema,
                'args': argparse.Namespace(model='bootmae_base')}, src)
    dst = str(tmp_path / 'vit.pth')
    assert _tool('bootmae_to_vit').main([src, dst]) == 0
    saved = torch.load(dst, weights_only=True)
    vit = VisionTransformer(**saved['meta']['vit_kwargs'])
    assert vit.layers[0].attn.num_heads == 12
    vit.load_state_dict({k[len('backbone.'):]: v for k, v in
                         saved['state_dict'].items()}, strict=True)
    vit.eval()
    ours = _ours(model, 'online')
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert (vit(x)[0] - ours(x)[0]).abs().max() <= ATOL

    torch.save({'model': ref, 'model_ema': ema}, src)
    with pytest.raises(SystemExit, match='--num-heads'):
        _tool('bootmae_to_vit').main([src, dst])


def test_stock_mmpretrain_and_mmseg_models_load_our_checkpoints(
        pretrained_4_heads, tmp_path):
    """mmengine's own ``Pretrained`` initializer, in a stock mmpretrain
    ``VisionTransformer`` and in an mmseg config's backbone
    (``mmpretrain.VisionTransformer``), loads the raw training checkpoint
    (``prefix='backbone.'``) and the ``bootmae_to_vit.py`` export."""
    from mmengine.registry import DefaultScope
    from mmseg.registry import MODELS as SEG_MODELS
    src, model = pretrained_4_heads
    dst = str(tmp_path / 'vit.pth')
    assert _tool('bootmae_to_vit').main([src, dst]) == 0
    kwargs = torch.load(dst, weights_only=True)['meta']['vit_kwargs']
    raw = model.backbone.state_dict()
    # the export holds the k bias our forward uses: zero
    exported = {k: model.backbone.get_submodule(k[:-len('.bias')]).qv_bias
                if k.endswith('attn.qkv.bias') else v for k, v in raw.items()}
    for checkpoint, expected in ((src, raw), (dst, exported)):
        init_cfg = dict(type='Pretrained', checkpoint=checkpoint,
                        prefix='backbone.')
        stock = VisionTransformer(**kwargs, init_cfg=init_cfg)
        stock.init_weights()
        with DefaultScope.overwrite_default_scope('mmseg'):
            seg = SEG_MODELS.build(dict(type='mmpretrain.VisionTransformer',
                                        **kwargs, init_cfg=init_cfg))
        seg.init_weights()
        for loaded in (stock.state_dict(), seg.state_dict()):
            assert loaded.keys() == expected.keys()
            for k, v in expected.items():
                assert torch.equal(loaded[k], v), (checkpoint, k)


def test_an_export_records_its_architecture(pretrained_4_heads, tmp_path,
                                            capsys):
    """``bootmae_to_vit.py``'s output (``meta['vit_kwargs']``) exports on
    to timm without ``--num-heads``."""
    src, model = pretrained_4_heads
    vit = str(tmp_path / 'vit.pth')
    assert _tool('bootmae_to_vit').main([src, vit]) == 0
    capsys.readouterr()
    assert _tool('bootmae_to_timm').main([vit, str(tmp_path / 't.pth')]) == 0
    assert "'num_heads': 4" in capsys.readouterr().out
