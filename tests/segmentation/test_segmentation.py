"""ADE20K UperNet on BootMAE (README "Segmentation"): configs, checkpoint
loading into ``BootMAEViTSeg``, layer decay, and a tiny real training run."""
import glob
import importlib.util
import json
import os.path as osp

import numpy as np
import pytest
import torch
from mmengine.config import Config

import bootmae_mm.segmentation  # noqa: F401  (registers BootMAEViTSeg)
from bootmae_mm.interop.checkpoint_files import safe_torch_load
from bootmae_mm.models.utils import sincos_pos_embed
from helpers.bootmae import save_bootmae_checkpoint
from helpers.float_bounds import assert_rounding_close
from helpers.repo import load_tool
from helpers.segmentation import (
    ARCH,
    PATCH,
    SEG_CONFIG,
    make_ade20k,
    tiny_model_overrides,
    tiny_seg_train_config,
)

CONFIG_MS = SEG_CONFIG.replace('.py', '_ms.py')


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models run fastest on one thread; more only contend with the
    other tests for the 2 cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def build_segmentor(model_cfg):
    from mmengine.registry import DefaultScope
    from mmseg.registry import MODELS
    with DefaultScope.overwrite_default_scope('mmseg'):
        return MODELS.build(model_cfg)


def tiny_backbone(img_size=32, checkpoint=None, source='online'):
    from mmseg.registry import MODELS
    backbone = MODELS.build(dict(
        type='BootMAEViTSeg', arch=ARCH, img_size=img_size, patch_size=PATCH,
        out_indices=(1, 3),
        init_cfg=dict(type='BootMAEPretrained', checkpoint=str(checkpoint),
                      source=source) if checkpoint else None))
    backbone.init_weights()
    backbone.eval()
    return backbone


@pytest.mark.parametrize('config', [SEG_CONFIG, CONFIG_MS])
def test_configs_load_and_build(config):
    cfg = Config.fromfile(config)
    assert cfg.default_scope == 'mmseg'
    assert cfg.train_cfg.max_iters == 160000
    assert cfg.train_dataloader.batch_size == 2
    assert cfg.optim_wrapper.type == 'AmpOptimWrapper'
    assert cfg.optim_wrapper.clip_grad.max_norm == 3
    model_cfg = cfg.model
    if config == CONFIG_MS:
        assert model_cfg.type == 'SegTTAModel'
        aug = cfg.test_dataloader.dataset.pipeline[1]
        assert aug.type == 'TestTimeAug'
        assert [t.type for t in aug.transforms[0]] == [
            'ResizeShortestEdge'] * 6
        assert [t.prob for t in aug.transforms[1]] == [0., 1.]
        model_cfg = model_cfg.module
    seg = model_cfg
    assert seg.backbone.type == 'BootMAEViTSeg'
    assert tuple(seg.backbone.out_indices) == (3, 5, 7, 11)
    assert seg.test_cfg == dict(mode='slide', crop_size=(512, 512),
                                stride=(341, 341))
    assert seg.auxiliary_head.in_index == 2
    assert seg.auxiliary_head.loss_decode.loss_weight == 0.4
    tiny_model_overrides(seg)
    model = build_segmentor(cfg.model).eval()
    segmentor = model.module if config == CONFIG_MS else model
    feats = segmentor.extract_feat(torch.randn(1, 3, 32, 32))
    # x4, x2, x1, x0.5 of the 4 x 4 grid
    assert [f.shape[-1] for f in feats] == [16, 8, 4, 2]
    assert segmentor.decode_head.num_classes == 150


def test_full_size_backbone_matches_recipe():
    cfg = Config.fromfile(SEG_CONFIG)
    cfg.model.backbone.init_cfg = None
    with torch.device('meta'):  # shapes only: no memory, no init time
        backbone = build_segmentor(cfg.model.backbone)
    assert backbone.patch_resolution == (32, 32)
    assert backbone.num_layers == 12 and backbone.embed_dims == 768
    # as the reference's segmentation backbone: a trainable position
    # embedding and learnable layer scales on both branches of every block
    assert backbone.pos_embed.requires_grad
    assert backbone.pos_embed.shape == (1, 32 * 32 + 1, 768)
    layer = backbone.layers[11]
    for gamma in (layer.gamma_1, layer.gamma_2):
        assert gamma.requires_grad and gamma.shape == (768, )
    assert layer.attn.relative_position_bias_table.shape == (63 * 63 + 3, 12)
    assert float(layer.drop_path.drop_prob) == pytest.approx(0.1)
    assert layer.attn.qkv.bias is None and layer.attn.q_bias.shape == (768, )


def test_bootmae_checkpoint_loads_into_backbone(tmp_path):
    ckpt = tmp_path / 'bootmae.pth'
    source = save_bootmae_checkpoint(ckpt, arch=ARCH)
    for which in ('online', 'target'):
        encoder = source.target_encoder if which == 'target' \
            else source.backbone
        src = {**dict(encoder.named_parameters()),
               **dict(encoder.named_buffers())}
        backbone = tiny_backbone(checkpoint=ckpt, source=which)
        own = backbone.state_dict()
        C = ARCH['embed_dims']
        for name, value in src.items():
            if name.startswith('ln1.'):
                continue  # final norm: not used by the dense backbone
            if name.endswith('attn.qkv.bias'):
                torch.testing.assert_close(
                    own[name.replace('qkv.bias', 'q_bias')], value[:C])
                torch.testing.assert_close(
                    own[name.replace('qkv.bias', 'v_bias')], value[2 * C:])
            else:
                torch.testing.assert_close(own[name], value, msg=name)
        for i in range(ARCH['num_layers']):
            table = own[f'layers.{i}.attn.relative_position_bias_table']
            assert not table.any()  # zero: pretraining has none
            for gamma in ('gamma_1', 'gamma_2'):  # nor layer scales
                assert torch.equal(own[f'layers.{i}.{gamma}'],
                                   torch.ones(ARCH['embed_dims']))
        # same function: the block-3 map equals the encoder's last block
        x = torch.randn(2, 3, 32, 32)
        with torch.no_grad():
            feat = backbone(x)[-1]
            high = encoder.encode(x).high_level[:, 1:]
        # 4 blocks of ~8 operations, sums of at most the 128-wide MLP
        assert_rounding_close(feat.flatten(2).transpose(1, 2), high,
                              ops=34, terms=128)


def test_reference_checkpoint_loads(tmp_path):
    """The reference fine-tuning layout ({'model': {'blocks.N.*', ...}});
    its fc_norm and head are left out."""
    source = tiny_backbone()
    with torch.no_grad():
        for name, p in source.named_parameters():
            if name != 'pos_embed':  # fixed sin-cos, checked by the loader
                p.add_(torch.randn_like(p))
    renames = [('patch_embed.projection.', 'patch_embed.proj.'),
               ('.ffn.layers.', '.ffn.'), ('layers.', 'blocks.'),
               ('.ln1.', '.norm1.'),
               ('.ln2.', '.norm2.'), ('.ffn.0.0.', '.mlp.fc1.'),
               ('.ffn.1.', '.mlp.fc2.')]
    reference = {}
    for name, value in source.state_dict().items():
        if 'relative_position' in name or 'gamma' in name:
            continue  # the reference's fine-tuning model has neither
        for old, new in renames:
            name = name.replace(old, new)
        reference[name] = value
    reference.update({'fc_norm.weight': torch.ones(64),
                      'fc_norm.bias': torch.zeros(64),
                      'head.weight': torch.zeros(10, 64),
                      'head.bias': torch.zeros(10)})
    torch.save({'model': reference, 'epoch': 799}, str(tmp_path / 'ref.pth'))
    loaded = tiny_backbone(checkpoint=tmp_path / 'ref.pth').state_dict()
    for name, value in source.state_dict().items():
        if 'gamma' in name:
            assert torch.equal(loaded[name], torch.ones_like(value)), name
        elif 'relative_position_bias_table' not in name:
            torch.testing.assert_close(loaded[name], value, msg=name)


def test_other_arch_is_refused_with_keys_listed(tmp_path):
    ckpt = tmp_path / 'wide.pth'
    save_bootmae_checkpoint(ckpt, arch=dict(embed_dims=32, num_layers=4,
                                            num_heads=2,
                                            feedforward_channels=64))
    with pytest.raises(ValueError) as err:
        tiny_backbone(checkpoint=ckpt)
    msg = str(err.value)
    assert 'wide.pth' in msg and 'shape mismatches' in msg
    assert 'layers.0.attn.qkv.weight: checkpoint (96, 32) vs model ' \
        '(192, 64)' in msg
    # and a checkpoint of unrelated weights
    torch.save({'state_dict': {'foo.weight': torch.ones(2)}},
               str(tmp_path / 'foo.pth'))
    with pytest.raises((KeyError, ValueError), match='foo.pth'):
        tiny_backbone(checkpoint=tmp_path / 'foo.pth')


def test_other_input_size_is_refused_with_the_fix_named():
    """The relative position tables hold one grid: another input size
    fails at once, naming the setting that pads test images."""
    backbone = tiny_backbone(img_size=32)
    assert [f.shape for f in backbone(torch.zeros(1, 3, 32, 32))] == [
        (1, 64, 4, 4)] * 2
    with pytest.raises(ValueError, match=r'takes 32 x 32 inputs.*got 24 x 32'
                       r'.*data_preprocessor.test_cfg'):
        backbone(torch.zeros(1, 3, 24, 32))


def test_mmseg_inference_apis_take_our_config(tmp_path):
    """mmseg's init_model / inference_model and MMSegInferencer run the
    config on a picture whose resized height is under the window (padded
    up to it; the prediction comes back at the picture's own size)."""
    from mmseg.apis import MMSegInferencer, inference_model, init_model
    ckpt = tmp_path / 'bootmae.pth'
    save_bootmae_checkpoint(ckpt, arch=ARCH)
    cfg = Config.fromfile(SEG_CONFIG)
    tiny_model_overrides(cfg.model, img_size=64, checkpoint=str(ckpt))
    for pipeline in (cfg.test_pipeline, cfg.test_dataloader.dataset.pipeline):
        assert pipeline[1].type == 'Resize'
        # keep_ratio: a 20 x 240 picture becomes 21 x 256, under the window
        pipeline[1].scale = (256, 64)
    # not mmseg's 'visualizer': a later Runner would reuse it (no backends)
    cfg.visualizer.name = 'inference_api_test'
    cfg_path = str(tmp_path / 'seg.py')
    cfg.dump(cfg_path)
    img = np.random.default_rng(0).integers(0, 256, (20, 240, 3), np.uint8)

    result = inference_model(init_model(cfg_path, device='cpu'), img)
    assert result.pred_sem_seg.data.shape == (1, 20, 240)
    out = MMSegInferencer(model=cfg_path, device='cpu')(img)
    assert out['predictions'].shape == (20, 240)

    # without the padding the 21-high picture is refused, the fix named
    cfg.model.data_preprocessor.test_cfg = None
    cfg.dump(cfg_path)
    with pytest.raises(ValueError, match='data_preprocessor.test_cfg'):
        inference_model(init_model(cfg_path, device='cpu'), img)


def test_checkpoint_key_must_be_set():
    from mmseg.registry import MODELS
    backbone = MODELS.build(dict(
        type='BootMAEViTSeg', arch=ARCH, img_size=32, patch_size=PATCH,
        init_cfg=dict(type='BootMAEPretrained', checkpoint=None),
        out_indices=(3, )))
    with pytest.raises(ValueError,
                       match=r'model\.backbone\.init_cfg\.checkpoint'):
        backbone.init_weights()


def test_grid_change_resizes_position_tables(tmp_path):
    """A segmentor checkpoint at a 4 x 4 grid (random relative position
    tables) loads at an 8 x 8 grid: absolute embedding and tables are
    resized (through the interp2d shim on SciPy >= 1.14)."""
    small = tiny_backbone(img_size=32)
    with torch.no_grad():
        for layer in small.layers:
            layer.attn.relative_position_bias_table.normal_()
    torch.save({'state_dict': {f'backbone.{k}': v
                               for k, v in small.state_dict().items()}},
               str(tmp_path / 'seg.pth'))
    big = tiny_backbone(img_size=64, checkpoint=tmp_path / 'seg.pth')
    table = big.layers[0].attn.relative_position_bias_table
    src = small.layers[0].attn.relative_position_bias_table
    assert table.shape == (15 * 15 + 3, 2)
    assert torch.isfinite(table).all() and table.any()
    torch.testing.assert_close(table[-3:], src[-3:])  # cls entries kept
    # the centre (zero offset) of the 7 x 7 table lands on the 15 x 15 centre
    torch.testing.assert_close(table[7 * 15 + 7], src[3 * 7 + 3],
                               atol=1e-4, rtol=1e-4)
    assert big.pos_embed.shape == (1, 65, 64)
    torch.testing.assert_close(big.layers[2].attn.qkv.weight,
                               small.layers[2].attn.qkv.weight)


def test_layer_decay_scales(tmp_path):
    from mmengine.optim import build_optim_wrapper
    cfg = Config.fromfile(SEG_CONFIG)
    tiny_model_overrides(cfg.model)
    cfg.model.backbone.init_cfg = None
    model = build_segmentor(cfg.model)
    optim_cfg = cfg.optim_wrapper.to_dict()
    optim_cfg.update(type='OptimWrapper', paramwise_cfg=dict(
        optim_cfg['paramwise_cfg'], num_layers=ARCH['num_layers']))
    optim_cfg.pop('loss_scale')
    from mmengine.registry import DefaultScope
    with DefaultScope.overwrite_default_scope('mmseg'):
        wrapper = build_optim_wrapper(model, optim_cfg)
    scale = {name: g['lr_scale'] for g in wrapper.optimizer.param_groups
             for name in g['param_names']}
    lr = {name: g['lr'] for g in wrapper.optimizer.param_groups
          for name in g['param_names']}
    n, d = ARCH['num_layers'], 0.65
    expected = {  # depth 0 = embeddings, block i = i + 1, rest = n + 1
        'backbone.patch_embed.projection.weight': d ** (n + 1),
        'backbone.cls_token': d ** (n + 1),
        'backbone.layers.0.attn.qkv.weight': d ** n,
        'backbone.layers.2.attn.relative_position_bias_table': d ** (n - 2),
        'backbone.layers.3.ffn.layers.1.bias': d ** 1,
        'decode_head.conv_seg.weight': 1.0,
        'neck.upsample_4x.0.weight': 1.0,
        # the reference's extra trainable tensors: the position embedding
        # as the patch embedding, each layer scale as its block
        'backbone.pos_embed': d ** (n + 1),
        'backbone.layers.0.gamma_1': d ** n,
        'backbone.layers.3.gamma_2': d ** 1,
    }
    wd = {name: g['weight_decay'] for g in wrapper.optimizer.param_groups
          for name in g['param_names']}
    for name, value in expected.items():
        assert scale[name] == pytest.approx(value), name
        assert lr[name] == pytest.approx(4e-4 * value), name
    # weight decay: none on the layer scales (1-D); the position embedding
    # takes it, as in the reference (its exclusion list misses the name)
    assert wd['backbone.layers.0.gamma_1'] == 0
    assert wd['backbone.layers.3.gamma_2'] == 0
    assert wd['backbone.pos_embed'] == 0.05
    assert wd['backbone.layers.0.attn.qkv.weight'] == 0.05


def test_position_embedding_starts_from_the_resized_checkpoint_table(
        tmp_path):
    """A pretraining checkpoint at a 4 x 4 grid into an 8 x 8 backbone: the
    trainable position embedding is the checkpoint's sin-cos table resized
    bicubically (cls row kept), the layer scales start at 1.0."""
    import torch.nn.functional as F
    ckpt = tmp_path / 'bootmae.pth'
    source = save_bootmae_checkpoint(ckpt, arch=ARCH)
    backbone = tiny_backbone(img_size=64, checkpoint=ckpt)
    # the checkpoint's table (perturbed by save_bootmae_checkpoint: taken
    # from the checkpoint, not recomputed), resized
    table = source.backbone.pos_embed.detach()
    assert not torch.equal(table, sincos_pos_embed(4, ARCH['embed_dims']))
    grid = table[:, 1:].reshape(1, 4, 4, -1).permute(0, 3, 1, 2)
    resized = F.interpolate(grid, size=(8, 8), mode='bicubic',
                            align_corners=False)
    expected = torch.cat([table[:, :1],
                          resized.flatten(2).transpose(1, 2)], dim=1)
    torch.testing.assert_close(backbone.pos_embed.detach(), expected)
    assert backbone.pos_embed.requires_grad
    for layer in backbone.layers:
        assert torch.equal(layer.gamma_1, torch.ones(ARCH['embed_dims']))
        assert torch.equal(layer.gamma_2, torch.ones(ARCH['embed_dims']))
        assert layer.gamma_1.requires_grad and layer.gamma_2.requires_grad


def test_segmentation_checkpoint_round_trips(tmp_path):
    """A segmentor checkpoint of ours carries the trained position
    embedding and layer scales, and they load back as they were."""
    trained = tiny_backbone(img_size=32)
    with torch.no_grad():
        trained.pos_embed.add_(torch.randn_like(trained.pos_embed))
        for layer in trained.layers:
            layer.gamma_1.normal_()
            layer.gamma_2.normal_()
            layer.attn.relative_position_bias_table.normal_()
    state = {f'backbone.{k}': v for k, v in trained.state_dict().items()}
    assert 'backbone.pos_embed' in state
    assert 'backbone.layers.3.gamma_2' in state
    torch.save({'state_dict': state, 'meta': {}}, str(tmp_path / 'seg.pth'))
    loaded = tiny_backbone(img_size=32, checkpoint=tmp_path / 'seg.pth')
    for name, value in trained.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], value), name


def test_multi_scale_views_keep_the_short_side_at_least_512(tmp_path):
    """The _ms config's test-time views of a 683 x 512 picture (reference:
    short side max(512, 512 r), aspect kept, no long-side cap), through
    mmseg's TestTimeAug and our config's pipeline."""
    import cv2
    from mmcv.transforms import Compose
    from mmengine.registry import DefaultScope
    rng = np.random.default_rng(0)
    img_path = str(tmp_path / 'ADE_val_00000001.jpg')
    seg_path = str(tmp_path / 'ADE_val_00000001.png')
    assert cv2.imwrite(img_path, rng.integers(0, 256, (512, 683, 3),
                                              np.uint8))
    assert cv2.imwrite(seg_path, rng.integers(0, 151, (512, 683), np.uint8))
    cfg = Config.fromfile(CONFIG_MS)
    with DefaultScope.overwrite_default_scope('mmseg'):
        pipeline = Compose(cfg.test_dataloader.dataset.pipeline)
        out = pipeline(dict(img_path=img_path, seg_map_path=seg_path,
                            reduce_zero_label=True, seg_fields=[]))
    shapes = [s.img_shape for s in out['data_samples']]
    # the views: 6 scales, each unflipped and flipped
    assert len(shapes) == 12
    assert [min(s) for s in shapes[::2]] == [512, 512, 512, 640, 768, 896]
    assert shapes[1::2] == shapes[::2]
    for h, w in shapes:
        assert w / h == pytest.approx(683 / 512, abs=1 / h)
    assert [tuple(x.shape[-2:]) for x in out['inputs'][::2]] == shapes[::2]
    assert all(s.ori_shape == (512, 683) for s in out['data_samples'])


def test_tiny_upernet_trains_and_reports_miou(tmp_path):
    """tools/train.py on the real config (shrunk): a BootMAE checkpoint is
    loaded, UperNet trains a few iterations with layer decay (the config's
    AMP falls back to fp32 without an accelerator) and is
    evaluated with mmseg's ADE20KDataset and IoUMetric."""
    import mmcv
    assert not importlib.util.find_spec('mmcv._ext'), \
        'this test is meant for mmcv-lite'
    assert mmcv is not None
    data_root = make_ade20k(tmp_path / 'ade')
    ckpt = tmp_path / 'bootmae.pth'
    save_bootmae_checkpoint(ckpt, arch=ARCH)

    cfg = tiny_seg_train_config(SEG_CONFIG, data_root, str(ckpt), max_iters=4)
    cfg_path = str(tmp_path / 'tiny_seg.py')
    cfg.dump(cfg_path)

    train_tool = load_tool('tools/train.py')
    work_dir = str(tmp_path / 'work')
    train_tool.main([cfg_path, '--work-dir', work_dir])

    scalars = glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json'))
    records = [json.loads(line) for line in open(scalars[0])]
    evals = [r for r in records if 'mIoU' in r]
    assert evals, records
    assert 0.0 <= evals[-1]['mIoU'] <= 100.0
    losses = [r['decode.loss_ce'] for r in records if 'decode.loss_ce' in r]
    assert len(losses) == 4 and all(np.isfinite(losses))
    assert any('aux.loss_ce' in r for r in records)
    assert osp.isfile(osp.join(work_dir, 'iter_4.pth'))
    # the trained segmentor checkpoint loads back through our adapter
    state = safe_torch_load(osp.join(work_dir, 'iter_4.pth'))
    trained = tiny_backbone(img_size=64,
                            checkpoint=osp.join(work_dir, 'iter_4.pth'))
    torch.testing.assert_close(
        trained.layers[0].attn.qkv.weight,
        state['state_dict']['backbone.layers.0.attn.qkv.weight'])
    # it carries the trained position embedding and layer scales
    for name in ('pos_embed', 'layers.0.gamma_1', 'layers.3.gamma_2'):
        saved = state['state_dict']['backbone.' + name]
        assert torch.equal(trained.state_dict()[name], saved), name
    assert not torch.equal(state['state_dict']['backbone.layers.3.gamma_2'],
                           torch.ones(ARCH['embed_dims']))  # trained

    # the multi-scale + flip test config (SegTTAModel) on that checkpoint,
    # through tools/test.py; two scales instead of six keep it short
    ms = Config.fromfile(CONFIG_MS)
    tiny_model_overrides(ms.model.module, img_size=64)
    # mmengine gives the wrapper's module the top-level data_preprocessor
    ms.data_preprocessor = ms.model.module.data_preprocessor
    resize, flips, *rest = ms.tta_pipeline[1].transforms
    assert len(resize) == 6 and len(flips) == 2
    assert resize[0].type == 'ResizeShortestEdge'
    ms.tta_pipeline[1].transforms[0] = [
        dict(resize[0], scale=max(64, int(64 * r))) for r in (0.75, 1.25)]
    ms.test_dataloader.update(num_workers=0, persistent_workers=False)
    ms.test_dataloader.dataset.update(data_root=data_root,
                                      pipeline=ms.tta_pipeline)
    ms_path = str(tmp_path / 'tiny_seg_ms.py')
    ms.dump(ms_path)
    metrics = load_tool('tools/test.py').main(
        [ms_path, osp.join(work_dir, 'iter_4.pth'),
         '--work-dir', str(tmp_path / 'ms')])
    assert 0.0 <= metrics['mIoU'] <= 100.0
