"""Reference checkpoint conversion (README "Reference checkpoints"):
every reference name maps and loads strictly; bad checkpoints are reported
by name; a converted tiny reference model computes exactly what the
reference forward computes."""
import argparse
import json
import os
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmpretrain.registry import MODELS

import bootmae_mm  # noqa: F401
from bootmae_mm.interop.reference_mapping import (
    ReferenceMappingError,
    bootmae_to_reference,
    reference_finetune_to_vit,
    reference_to_bootmae,
)
from helpers.bootmae import data_samples_with_masks
from helpers.float_bounds import assert_rounding_close
from helpers.reference_bootmae import (
    ReferenceBootMAE,
    reference_losses,
    reference_sincos,
)
from helpers.repo import REPO_ROOT, load_tool, run_tool

# every parameter name and shape of the reference checkpoints (a copy of
# the project's shared/reference/official_bootmae_keys.json)
KEYS = osp.join(REPO_ROOT, 'tests', 'data', 'official_bootmae_keys.json')
CONVERTER = 'tools/model_converters/bootmae_official_to_mm.py'


def converter_main(args, capsys):
    """Run the converter's ``main`` in this process (the start-up of a
    subprocess costs more than the conversion); returns (code, output)."""
    code = load_tool(CONVERTER).main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out + out.err


def reference_shapes(name):
    with open(KEYS) as f:
        return json.load(f)[name]


def random_reference(shapes, seed=0):
    """A tensor for every reference name and shape, each filled with its
    own value (cheap even for ViT-L, and any mix-up of two names shows);
    the fixed position embeddings hold the reference's sin-cos values."""
    sd = {k: torch.full(shapes[k], seed + i / 1000.)
          for i, k in enumerate(shapes)}
    for key in ('pos_embed', 'de_pos_embed'):
        if key in sd:
            n, d = sd[key].shape[1:]
            sd[key] = reference_sincos(int(round((n - 1)**0.5)), d)
    return sd


# --------------------------------------------------------------------------
# (a) every reference name and shape converts and loads strictly
# --------------------------------------------------------------------------
@pytest.mark.parametrize('name,config', [
    ('pretrain_vit_base', 'configs/bootmae_vit-b_800e.py'),
    ('pretrain_vit_large', 'configs/bootmae_vit-l_800e.py'),
])
def test_reference_keys_load_strictly(name, config):
    shapes = reference_shapes(name)
    sd = random_reference(shapes)
    ema = random_reference(shapes, seed=1)
    converted = reference_to_bootmae(sd, ema)
    with torch.device('meta'):  # one build, no init, no memory
        model = MODELS.build(
            Config.fromfile(osp.join(REPO_ROOT, config)).model)
    model.load_state_dict(converted, strict=True, assign=True)
    # the q/v biases became one qkv bias with zeros for k
    bias = model.backbone.layers[3].attn.qkv.bias
    q, k, v = bias.chunk(3)
    assert torch.equal(q, sd['blocks.3.attn.q_bias'])
    assert not k.any() and not torch.equal(q, v)
    assert torch.equal(v, sd['blocks.3.attn.v_bias'])
    # the target comes from model_ema, the decoders from model
    assert torch.equal(model.target_encoder.layers[0].ln1.weight,
                       ema['blocks.0.norm1.weight'])
    assert torch.equal(model.pixel_decoder.decoder_blocks[1].cross_attn.kv
                       .weight, sd['decode_blocks.1.c_attn.kv.weight'])
    assert torch.equal(model.feature_decoder.decoder_pred.weight,
                       sd['lm_head_1.weight'])
    # and back: the same names and values as the reference
    back, back_ema = bootmae_to_reference(model.state_dict())
    assert set(back) == set(shapes)
    assert all(torch.equal(back[k], sd[k]) for k in shapes)
    assert all(torch.equal(back_ema[k], ema[k]) for k in shapes
               if k.startswith(('blocks.', 'patch_embed', 'cls_token')))
    # a tensor of the wrong shape does not load
    converted['pixel_decoder.decoder_embed.weight'] = torch.zeros(3, 3)
    with pytest.raises(RuntimeError, match='decoder_embed.weight'):
        model.load_state_dict(converted, strict=True, assign=True)


def test_finetune_keys_load_into_image_classifier():
    sd = random_reference(reference_shapes('finetune_vit_base'))
    converted = reference_finetune_to_vit(sd)
    with torch.device('meta'):
        model = MODELS.build(dict(
            type='ImageClassifier',
            backbone=dict(type='BootMAEViT', arch='b',
                          out_type='avg_featmap', final_norm=False),
            head=dict(type='LinearClsHead', num_classes=1000,
                      in_channels=768)))
    model.load_state_dict(converted, strict=True, assign=True)
    assert torch.equal(model.backbone.ln2.weight, sd['fc_norm.weight'])
    assert torch.equal(model.head.fc.bias, sd['head.bias'])


# --------------------------------------------------------------------------
# (b) missing / extra keys are reported by name
# --------------------------------------------------------------------------
def test_missing_and_extra_keys_are_named():
    sd = random_reference(reference_shapes('pretrain_vit_base'))
    bad = dict(sd)
    del bad['decode_blocks_1.1.c_attn.kv.weight']
    bad['blocks.0.attn.relative_position_bias_table'] = torch.zeros(3)
    with pytest.raises(ReferenceMappingError) as e:
        reference_to_bootmae(bad)
    msg = str(e.value)
    assert 'missing keys (1)' in msg
    assert 'decode_blocks_1.1.c_attn.kv.weight' in msg
    assert 'unknown keys (1)' in msg
    assert 'blocks.0.attn.relative_position_bias_table' in msg

    ema = dict(sd)
    del ema['blocks.5.mlp.fc2.bias']
    with pytest.raises(ReferenceMappingError, match=r'model_ema.*\n.*'
                       r'blocks\.5\.mlp\.fc2\.bias'):
        reference_to_bootmae(sd, ema)

    ft = random_reference(reference_shapes('finetune_vit_base'))
    del ft['fc_norm.bias']
    with pytest.raises(ReferenceMappingError, match='fc_norm.bias'):
        reference_finetune_to_vit(ft)


def test_learned_position_embedding_is_refused():
    sd = random_reference(reference_shapes('pretrain_vit_base'))
    sd['de_pos_embed'] = sd['de_pos_embed'] + 0.01
    with pytest.raises(ReferenceMappingError, match='de_pos_embed.*sin-cos'):
        reference_to_bootmae(sd)


# --------------------------------------------------------------------------
# (c) equivalence with the reference forward, tiny sizes
# --------------------------------------------------------------------------
# 60 wide, 5 heads; pixel decoder 32 wide -> inner width 5 * 6 = 30 != 32,
# as ViT-B's 512-wide decoder (504) -- the case that must load.
TINY = dict(img_size=32, patch_size=8, dim=60, depth=3, heads=5,
            decode_dim=32)


def tiny_bootmae_cfg():
    grid, d, h = 4, TINY['dim'], TINY['heads']
    return dict(
        type='BootMAE',
        backbone=dict(type='BootMAEViT', img_size=32, patch_size=8,
                      arch=dict(embed_dims=d, num_layers=3, num_heads=h,
                                feedforward_channels=4 * d)),
        pixel_decoder=dict(type='BootMAEPixelDecoder', patch_resolution=grid,
                           patch_size=8, in_dims=d, embed_dims=32, depth=2,
                           num_heads=h),
        pixel_head=dict(type='BootMAEPixelHead', patch_size=8),
        feature_decoder=dict(type='BootMAEFeatureDecoder',
                             patch_resolution=grid, in_dims=d, depth=2,
                             num_heads=h),
        feature_head=dict(type='BootMAEFeatureHead'))


def randomized_reference(seed):
    torch.manual_seed(seed)
    ref = ReferenceBootMAE(**TINY)
    with torch.no_grad():
        for name, p in ref.named_parameters():
            if 'pos_embed' not in name:
                p.normal_(0, 0.2)
                if 'norm' in name and name.endswith('weight'):
                    p.add_(1)
    return ref.eval()


def test_converted_tiny_model_matches_reference_forward():
    ref, ref_ema = randomized_reference(0), randomized_reference(1)
    model = MODELS.build(tiny_bootmae_cfg()).eval()
    model.load_state_dict(
        reference_to_bootmae(ref.state_dict(), ref_ema.state_dict()),
        strict=True)

    g = torch.Generator().manual_seed(0)
    B, N, num_masked = 3, 16, 11
    imgs = torch.randn(B, 3, 32, 32, generator=g)
    idx_shuffle = torch.stack([torch.randperm(N, generator=g)
                               for _ in range(B)])  # visible in any order
    mask = torch.zeros(B, N)
    mask.scatter_(1, idx_shuffle[:, N - num_masked:], 1)
    mask = mask.view(B, 4, 4)

    with torch.no_grad():
        ref_pix, ref_feat = ref(imgs, num_masked, idx_shuffle)
        ref_target = ref_ema.get_feature(imgs)
        latent, low, high = model.backbone(imgs, mask)
        pix = model.pixel_decoder(latent, low, mask)
        feat = model.feature_decoder(latent, high, mask)
        target = model.target_encoder.encode(imgs)[2][:, 1:]
        losses = model.loss(imgs, data_samples_with_masks(mask))
    # two implementations of one float32 function: equal up to rounding
    # (3 encoder + 2 decoder blocks of ~8 operations, sums of at most the
    # 240-wide MLP; the losses add a mean over 3 x 11 x 192 values)
    assert_rounding_close(pix, ref_pix, ops=48, terms=240)
    assert_rounding_close(feat, ref_feat, ops=48, terms=240)
    assert_rounding_close(target, ref_target, ops=48, terms=240)
    rloss, ploss = reference_losses(ref_pix, ref_feat, imgs, ref_target,
                                    mask, patch_size=8)
    assert_rounding_close(losses['loss_pixel'], rloss, ops=50,
                          terms=3 * 11 * 192)
    assert_rounding_close(losses['loss_feature'], ploss, ops=50,
                          terms=3 * 11 * 192)

    # our weights -> reference names reproduce the reference model exactly
    back, back_ema = bootmae_to_reference(model.state_dict())
    ref2 = ReferenceBootMAE(**TINY).eval()
    ref2.load_state_dict(back, strict=True)
    with torch.no_grad():
        assert_rounding_close(ref2(imgs, num_masked, idx_shuffle)[0],
                              ref_pix, ops=48, terms=240)


# --------------------------------------------------------------------------
# (d) the converter script end to end
# --------------------------------------------------------------------------
TINY_CONFIG = 'model = {!r}\n'


def test_converter_script(tmp_path, capsys):
    ref, ref_ema = randomized_reference(0), randomized_reference(1)
    src = str(tmp_path / 'bootmae_tiny.pth')
    torch.save(dict(model=ref.state_dict(), model_ema=ref_ema.state_dict(),
                    epoch=799, args=argparse.Namespace(mask_num=11)), src)
    cfg = tmp_path / 'tiny_cfg.py'
    cfg.write_text(TINY_CONFIG.format(tiny_bootmae_cfg()))
    dst = str(tmp_path / 'out' / 'converted.pth')
    proc = run_tool([CONVERTER, src, dst, '--config', str(cfg)])
    assert proc.returncode == 0, proc.stdout
    out = torch.load(dst, weights_only=True)
    assert out['meta']['kind'] == 'pretrain'
    assert out['meta']['momentum_target'] == 'model_ema'
    assert out['meta']['epoch'] == 799
    model = MODELS.build(tiny_bootmae_cfg())
    model.load_state_dict(out['state_dict'], strict=True)
    assert torch.equal(model.target_encoder.cls_token, ref_ema.cls_token)

    # a missing key: named, nothing written
    bad = ref.state_dict()
    del bad['down_1.bias']
    torch.save(dict(model=bad), src)
    code, out = converter_main([src, tmp_path / 'bad.pth', '--config', cfg],
                               capsys)
    assert code != 0
    assert 'down_1.bias' in out and 'missing' in out
    assert not osp.exists(tmp_path / 'bad.pth')

    # no default config for an unknown width: asks for --config
    torch.save(dict(model=ref.state_dict()), src)
    code, out = converter_main([src, tmp_path / 'x.pth'], capsys)
    assert code != 0 and '--config' in out


class _RunsCode:
    """Unpickling this calls ``os.system(command)``."""

    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command, )


def test_converter_refuses_pickled_callable(tmp_path, capsys):
    src = str(tmp_path / 'evil.pth')
    marker = tmp_path / 'ran'
    torch.save(dict(model={'cls_token': torch.zeros(1)},
                    hook=_RunsCode(f'touch {marker}')), src)
    code, out = converter_main([src, tmp_path / 'out.pth'], capsys)
    assert code != 0
    assert 'evil.pth' in out and 'Refused' in out
    assert not marker.exists() and not osp.exists(tmp_path / 'out.pth')


def test_converter_finetune_checkpoint(tmp_path, capsys):
    ref = randomized_reference(0).state_dict()
    sd = {k: v for k, v in ref.items()
          if k.startswith(('blocks.', 'patch_embed.', 'cls_token', 'pos_'))}
    sd.update({'fc_norm.weight': torch.randn(60), 'fc_norm.bias':
               torch.randn(60), 'head.weight': torch.randn(7, 60),
               'head.bias': torch.randn(7)})
    src, dst = str(tmp_path / 'ft.pth'), str(tmp_path / 'ft_mm.pth')
    torch.save(dict(model=sd), src)
    cfg = tmp_path / 'tiny_cls.py'
    cfg.write_text(TINY_CONFIG.format(dict(
        type='ImageClassifier',
        backbone=dict(tiny_bootmae_cfg()['backbone'], out_type='avg_featmap',
                      final_norm=False),
        head=dict(type='LinearClsHead', num_classes=7, in_channels=60))))
    code, out = converter_main([src, dst, '--config', cfg], capsys)
    assert code == 0, out
    out = torch.load(dst, weights_only=True)
    assert out['meta']['kind'] == 'finetune'
    assert torch.equal(out['state_dict']['head.fc.weight'], sd['head.weight'])
    assert torch.equal(out['state_dict']['backbone.ln2.bias'],
                       sd['fc_norm.bias'])
