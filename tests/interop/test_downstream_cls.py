"""ImageNet fine-tuning and linear probing from BootMAE checkpoints: the four
configs, the ``BootMAEPretrained`` initializer and mmpretrain's inferencers
(docs/method.md sections 8 and 9), on a tiny encoder and a generated
ImageNet-layout folder. The export tools: test_export.py."""
import copy
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.registry import DefaultScope
from mmengine.runner import Runner
from mmpretrain.models.utils import resize_pos_embed
from mmpretrain.registry import MODELS

import bootmae_mm  # noqa: F401
from bootmae_mm.interop.checkpoint_files import safe_torch_load
from bootmae_mm.interop.checkpoint_loading import load_bootmae_encoder
from bootmae_mm.interop.reference_mapping import bootmae_to_reference
from helpers.bootmae import (
    TINY_ARCH,
    save_bootmae_checkpoint,
    tiny_bootmae_cfg,
)
from helpers.downstream import (
    CLASSES,
    DEPTH,
    make_tiny_imagenet,
    tiny_cls_config,
)
from helpers.repo import REPO_ROOT

FT_B = 'configs/finetune/bootmae_vit-b_ft-100e_in1k.py'
FT_L = 'configs/finetune/bootmae_vit-l_ft-50e_in1k.py'
LIN_B = 'configs/linear/bootmae_vit-b_linear-90e_in1k.py'
LIN_L = 'configs/linear/bootmae_vit-l_linear-50e_in1k.py'
PREFIX = dict(online='backbone.', target='target_encoder.')


@pytest.fixture(scope='module', autouse=True)
def mmpretrain_scope():
    DefaultScope.get_instance('test_downstream_cls', scope_name='mmpretrain')


@pytest.fixture(scope='module')
def pretrained(tmp_path_factory):
    """A tiny BootMAE checkpoint (3 blocks) whose momentum target differs
    from the online encoder (the online one keeps the fixed sin-cos table
    that the reference format needs), and its state dict."""
    path = str(tmp_path_factory.mktemp('ckpt') / 'bootmae_tiny.pth')
    return path, save_bootmae_checkpoint(path, moved='target').state_dict()


@pytest.fixture(scope='module')
def imagenet(tmp_path_factory):
    return make_tiny_imagenet(tmp_path_factory.mktemp('imagenet'))


def tiny_config(path, checkpoint, source='online', data_root=None,
                work_dir=None):
    """:func:`helpers.downstream.tiny_cls_config` in fp32 without pinned
    memory, for a Runner built here (tools/train.py would fall back)."""
    cfg = tiny_cls_config(path, checkpoint, source, data_root, work_dir)
    cfg.optim_wrapper.type = 'OptimWrapper'  # AMP needs a GPU
    cfg.optim_wrapper.pop('loss_scale', None)
    for name in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[name].pin_memory = False
    return cfg


def build_model(cfg):
    model = MODELS.build(cfg.model)
    model.init_weights()
    return model


def assert_backbone_equals(backbone, state, prefix):
    """Every backbone tensor but ln2 (the norm of the pooled tokens, not
    part of a pretrained encoder) equals the checkpoint's."""
    own = backbone.state_dict()
    expected = [k for k in own if not k.startswith('ln2.')]
    assert len(expected) == len(own) - 2
    for k in expected:
        assert torch.equal(own[k], state[prefix + k]), k


# ------------------------------------------------------- config + loading
@pytest.mark.parametrize('path', [FT_B, FT_L, LIN_B, LIN_L])
@pytest.mark.parametrize('source', ['online', 'target'])
def test_config_builds_and_loads_the_chosen_encoder(path, source,
                                                    pretrained):
    ckpt, state = pretrained
    model = build_model(tiny_config(path, ckpt, source))
    prefix = PREFIX[source]
    linear = 'linear' in path
    assert_backbone_equals(model.backbone, state, prefix)
    other = PREFIX['target' if source == 'online' else 'online']
    assert not torch.equal(model.backbone.layers[0].attn.qkv.weight,
                           state[other + 'layers.0.attn.qkv.weight'])
    if linear:
        assert len(model.backbone.layers) == DEPTH
        assert not any(p.requires_grad
                       for p in model.backbone.parameters())
        model.train()
        assert not any(m.training for layer in model.backbone.layers
                       for m in layer.modules())
        assert model.head.training and model.neck.training


def test_full_size_configs_match_the_recipe():
    ft_b = Config.fromfile(osp.join(REPO_ROOT, FT_B))
    ft_l = Config.fromfile(osp.join(REPO_ROOT, FT_L))
    lin_b = Config.fromfile(osp.join(REPO_ROOT, LIN_B))
    lin_l = Config.fromfile(osp.join(REPO_ROOT, LIN_L))
    assert ft_b.model.backbone.drop_path_rate == 0.1
    assert ft_b.optim_wrapper.optimizer.lr == 5e-3
    assert ft_b.optim_wrapper.paramwise_cfg.layer_decay_rate == 0.6
    assert ft_l.optim_wrapper.optimizer.lr == 1.5e-3
    assert ft_l.optim_wrapper.paramwise_cfg.layer_decay_rate == 0.75
    assert (ft_b.train_cfg.max_epochs, ft_l.train_cfg.max_epochs) == (100, 50)
    assert (ft_b.param_scheduler[0].end, ft_l.param_scheduler[0].end) == (20,
                                                                         5)
    assert ft_b.param_scheduler[1].eta_min == 1e-6
    ema = [h for h in ft_b.custom_hooks if h.type == 'EMAHook']
    assert ema and abs(1 - ema[0].momentum - 0.9998) < 1e-12
    assert (lin_b.model.backbone.depth, lin_l.model.backbone.depth) == (10,
                                                                        18)
    assert lin_b.optim_wrapper.optimizer.type == 'LARS'
    assert lin_b.optim_wrapper.optimizer.lr == 0.1 * 16384 / 256
    assert (lin_b.train_cfg.max_epochs, lin_l.train_cfg.max_epochs) == (90,
                                                                         50)
    # the full-size probe builds only the probed blocks
    with torch.device('meta'):  # shapes only, no memory
        probe = MODELS.build(dict(lin_l.model.backbone, init_cfg=None))
    assert len(probe.layers) == 18 and probe.embed_dims == 1024


@pytest.mark.parametrize('path,blr', [(LIN_B, 0.1), (LIN_L, 0.07)])
def test_linear_probe_lr_and_bicubic_resizes(path, blr, pretrained):
    """docs/method.md section 8: LARS lr = blr x 16384 / 256 (6.4 for
    ViT-B, 4.48 for ViT-L), read off the built optimizer; the training
    crop and the test resize are bicubic (checked on a picture against
    Pillow's bicubic resize)."""
    import numpy as np
    from mmpretrain.registry import TRANSFORMS
    from PIL import Image
    cfg = tiny_config(path, pretrained[0])
    model = build_model(cfg)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    assert type(wrapper.optimizer).__name__ == 'LARS'
    lrs = [g['lr'] for g in wrapper.optimizer.param_groups]
    assert lrs == [pytest.approx(blr * 16384 / 256)] * len(lrs)

    full = Config.fromfile(osp.join(REPO_ROOT, path))
    img = np.random.default_rng(0).integers(0, 256, (300, 300, 3), np.uint8)

    def bicubic(array, size):
        return np.asarray(Image.fromarray(array).resize(size, Image.BICUBIC))

    crop = [t for t in full.train_dataloader.dataset.pipeline
            if t['type'] == 'RandomResizedCrop'][0]
    # the whole picture as the crop: only the resize is left to compare
    crop = TRANSFORMS.build(dict(crop, crop_ratio_range=(1., 1.),
                                 aspect_ratio_range=(1., 1.)))
    out = crop(dict(img=img.copy(), img_shape=img.shape[:2]))['img']
    np.testing.assert_array_equal(out, bicubic(img, (224, 224)))

    resize = [t for t in full.test_dataloader.dataset.pipeline
              if t['type'] == 'ResizeEdge'][0]
    out = TRANSFORMS.build(resize)(dict(img=img.copy(),
                                        img_shape=img.shape[:2]))['img']
    np.testing.assert_array_equal(out, bicubic(img, (256, 256)))


@pytest.mark.parametrize('path,decay', [(FT_B, 0.6), (FT_L, 0.75)])
def test_layer_decay_scales_follow_the_formula(path, decay, pretrained):
    cfg = tiny_config(path, pretrained[0])
    model = build_model(cfg)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    # (OptimWrapper adds one group of its own, without a name)
    groups = {g['param_name']: g for g in wrapper.param_groups
              if 'param_name' in g}
    n = TINY_ARCH['num_layers']
    expected = {  # name: layer_id; scale = decay ** (n + 1 - layer_id)
        'backbone.cls_token': 0,
        'backbone.patch_embed.projection.weight': 0,
        'backbone.layers.0.attn.qkv.weight': 1,
        'backbone.layers.1.ffn.layers.1.bias': 2,
        'backbone.layers.2.ln1.weight': 3,
        'backbone.ln2.weight': n + 1,
        'head.fc.weight': n + 1,
    }
    for name, layer_id in expected.items():
        assert groups[name]['lr_scale'] == pytest.approx(
            decay**(n + 1 - layer_id)), name
        assert groups[name]['lr'] == pytest.approx(
            cfg.optim_wrapper.optimizer.lr * decay**(n + 1 - layer_id))
    assert groups['backbone.layers.0.attn.qkv.weight']['weight_decay'] == 0.05
    assert groups['backbone.layers.2.ln1.weight']['weight_decay'] == 0
    assert groups['backbone.cls_token']['weight_decay'] == 0
    assert 'backbone.pos_embed' not in groups  # fixed sin-cos


# ------------------------------------------------------------ loading
def test_reference_checkpoints_load(pretrained, tmp_path):
    ckpt, state = pretrained
    model_sd, ema_sd = bootmae_to_reference(state)
    ref = str(tmp_path / 'reference_pretrain.pth')
    torch.save({'model': model_sd, 'model_ema': ema_sd, 'epoch': 799}, ref)
    for source in ('online', 'target'):
        model = build_model(tiny_config(FT_B, ref, source))
        # the reference has no k bias: compare all but the qkv biases
        own = model.backbone.state_dict()
        for k, v in own.items():
            if PREFIX[source] + k in state and not k.endswith('qkv.bias'):
                assert torch.equal(v, state[PREFIX[source] + k]), k
        bias = own['layers.1.attn.qkv.bias'].chunk(3)
        src = state[PREFIX[source] + 'layers.1.attn.qkv.bias'].chunk(3)
        assert torch.equal(bias[0], src[0]) and torch.equal(bias[2], src[2])
        assert not bias[1].any()

    # a reference fine-tuning checkpoint: encoder + fc_norm + head
    g = torch.Generator().manual_seed(0)
    ft = {k: v for k, v in model_sd.items()
          if k.startswith(('blocks.', 'patch_embed.', 'cls_token',
                           'pos_embed'))}
    ft.update({'fc_norm.weight': torch.rand(64, generator=g),
               'fc_norm.bias': torch.rand(64, generator=g),
               'head.weight': torch.rand(3, 64, generator=g),
               'head.bias': torch.rand(3, generator=g)})
    path = str(tmp_path / 'reference_finetune.pth')
    torch.save({'model': ft}, path)
    model = build_model(tiny_config(FT_B, path))
    assert torch.equal(model.backbone.ln2.weight, ft['fc_norm.weight'])
    assert torch.equal(model.backbone.layers[2].ffn.layers[1].weight,
                       ft['blocks.2.mlp.fc2.weight'])
    with pytest.raises(ValueError, match='no momentum target'):
        build_model(tiny_config(FT_B, path, source='target'))


def test_loading_reports_resizes_and_fails_loudly(pretrained, tmp_path):
    ckpt, state = pretrained
    probe = MODELS.build(dict(type='BootMAEViTLinearProbe', arch=TINY_ARCH,
                              depth=DEPTH, img_size=32, patch_size=8))
    report = load_bootmae_encoder(probe, ckpt)
    assert sorted(report['unused']) == sorted(
        k[len('backbone.'):] for k in state
        if k.startswith(('backbone.layers.2.', 'backbone.ln1.')))
    assert report['missing'] == ['ln2.weight', 'ln2.bias']

    # another input size: pos_embed resized by VisionTransformer's hook
    big = MODELS.build(dict(type='BootMAEViT', arch=TINY_ARCH, img_size=48,
                            patch_size=8))
    load_bootmae_encoder(big, ckpt)
    expected = resize_pos_embed(state['backbone.pos_embed'], (4, 4), (6, 6),
                                'bicubic', 1)
    assert torch.allclose(big.pos_embed, expected)

    # another arch: every mismatched key is listed with its shapes
    wide = MODELS.build(dict(type='BootMAEViT', img_size=32, patch_size=8,
                             arch=dict(TINY_ARCH, embed_dims=32)))
    with pytest.raises(ValueError, match=r'bootmae_tiny\.pth') as err:
        load_bootmae_encoder(wide, ckpt)
    assert 'cls_token: checkpoint (1, 1, 64) vs model (1, 1, 32)' in str(
        err.value)

    # nothing matches
    other = str(tmp_path / 'resnet.pth')
    torch.save({'state_dict': {'backbone.conv1.weight': torch.zeros(1)}},
               other)
    with pytest.raises(ValueError, match='No key of .*resnet.pth matched'):
        load_bootmae_encoder(big, other)

    # no momentum target in a pixel-only run
    pixel_only = MODELS.build(tiny_bootmae_cfg(feature_decoder=None,
                                               feature_head=None))
    path = str(tmp_path / 'pixel_only.pth')
    torch.save({'state_dict': pixel_only.state_dict()}, path)
    with pytest.raises(KeyError, match='pixel_only.pth has no '
                       r'target_encoder\.\* keys'):
        load_bootmae_encoder(big, path, source='target')

    # the placeholder checkpoint of the configs must be set
    cfg = tiny_config(FT_B, None)
    with pytest.raises(ValueError, match='init_cfg.checkpoint'):
        build_model(cfg)


# ------------------------------------------------------------ training
def test_tiny_finetune_runs_and_reports_accuracy(pretrained, imagenet,
                                                 tmp_path):
    cfg = tiny_config(FT_B, pretrained[0], data_root=imagenet,
                      work_dir=tmp_path)
    runner = Runner.from_cfg(cfg)
    runner.train()
    assert runner.iter == 3  # 12 images, batch 4, one epoch
    metrics = runner.test()
    assert set(metrics) == {'accuracy/top1', 'accuracy/top2'}
    assert 0 <= metrics['accuracy/top1'] <= metrics['accuracy/top2'] <= 100
    saved = safe_torch_load(tmp_path / 'epoch_1.pth')
    assert 'ema_state_dict' in saved  # EMA weights are kept (and evaluated)


def test_tiny_linear_probe_trains_only_the_head(pretrained, imagenet,
                                                tmp_path):
    ckpt, state = pretrained
    cfg = tiny_config(LIN_B, ckpt, data_root=imagenet, work_dir=tmp_path)
    runner = Runner.from_cfg(cfg)
    head_before = copy.deepcopy(runner.model.head.state_dict())
    runner.train()
    model = runner.model
    assert len(model.backbone.layers) == DEPTH
    # the encoder is the checkpoint's, unchanged by training
    assert_backbone_equals(model.backbone, state, 'backbone.')
    assert torch.equal(model.backbone.ln2.weight, torch.ones(64))
    head_after = model.head.state_dict()
    assert not torch.equal(head_before['fc.weight'], head_after['fc.weight'])
    # MAE's LARS: the trust ratio scales the weight's step, not the bias's
    groups = {id(p): g for g in runner.optim_wrapper.optimizer.param_groups
              for p in g['params']}
    assert groups[id(model.head.fc.bias)].get('lars_exclude') is True
    assert not groups[id(model.head.fc.weight)].get('lars_exclude', False)
    metrics = runner.test()
    assert 0 <= metrics['accuracy/top1'] <= 100


# ------------------------------------------------------ inferencers
@pytest.fixture(scope='module')
def finetuned(pretrained, tmp_path_factory):
    """A fine-tuned tiny classifier checkpoint (ln2 + head)."""
    model = build_model(tiny_config(FT_B, pretrained[0]))
    with torch.no_grad():
        model.backbone.ln2.weight.uniform_(0.5, 1.5)
        model.head.fc.weight.normal_()
    path = str(tmp_path_factory.mktemp('ft') / 'finetuned.pth')
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, path)
    return path


def test_mmpretrain_inferencers_take_our_config(pretrained, finetuned,
                                                tmp_path):
    """mmpretrain's own ImageClassificationInferencer and FeatureExtractor
    run a fine-tuned BootMAE classifier from its config and checkpoint."""
    import numpy as np
    from mmpretrain import FeatureExtractor, ImageClassificationInferencer
    cfg = tiny_config(FT_B, pretrained[0])
    cfg.model.backbone.init_cfg = None  # the weights come from the checkpoint
    # not 'visualizer': a later Runner in this process would reuse it
    cfg.visualizer.name = 'inferencer_test'
    cfg_path = str(tmp_path / 'finetuned_cfg.py')
    cfg.dump(cfg_path)
    img = np.random.default_rng(0).integers(0, 256, (40, 48, 3), np.uint8)

    inferencer = ImageClassificationInferencer(
        model=cfg_path, pretrained=finetuned, device='cpu')
    saved = safe_torch_load(finetuned)['state_dict']
    assert torch.equal(inferencer.model.head.fc.weight,
                       saved['head.fc.weight'])
    result = inferencer(img)[0]
    assert 0 <= result['pred_label'] < len(CLASSES)
    assert result['pred_scores'].shape == (len(CLASSES), )
    features = FeatureExtractor(model=cfg_path, pretrained=finetuned,
                                device='cpu')(img)[0]
    assert [f.shape for f in features] == [(64, )]
