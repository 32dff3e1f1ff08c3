"""Our model-zoo names in mmpretrain (model-index.yml, configs/metafile.yml):
``list_models``, ``get_model`` (with our and the reference's checkpoints)
and the inferencers take them; ``FeatureExtractor`` works on the
pretraining entries."""
import os.path as osp

import numpy as np
import torch
from mmengine.dataset import default_collate

import bootmae_mm  # noqa: F401
from bootmae_mm.interop.reference_mapping import bootmae_to_reference
from helpers.repo import REPO_ROOT

RELEASE = 'https://github.com/LightDXY/BootMAE/releases/download/v0.1.0/'
PT_B = 'bootmae_vit-base-p16_16xb128-amp-coslr-800e_in1k'
PT_L = 'bootmae_vit-large-p16_16xb128-amp-coslr-800e_in1k'
FT_B = 'bootmae_vit-base-p16_800e-pre_16xb128-100e_in1k'
FT_L = 'bootmae_vit-large-p16_800e-pre_8xb128-50e_in1k'
LIN_B = 'bootmae_vit-base-p16_800e-pre_linear-90e_in1k'
LIN_L = 'bootmae_vit-large-p16_800e-pre_linear-50e_in1k'
SEG_B = 'upernet_bootmae_vit-base-p16_800e-pre_8xb2-160k_ade20k-512x512'
# a 64-wide, 2-block encoder at the configs' own 224 px, patch 16
def _tiny_arch():  # (fresh: merging consumes `_delete_`)
    return dict(_delete_=True, embed_dims=64, num_layers=2, num_heads=2,
                feedforward_channels=128)


def tiny_pretrain():
    """``get_model`` overrides of the pretraining configs."""
    return dict(
        backbone=dict(arch=_tiny_arch(), drop_path_rate=0.),
        pixel_decoder=dict(in_dims=64, embed_dims=32, depth=1, num_heads=2),
        feature_decoder=dict(in_dims=64, embed_dims=32, depth=1,
                             num_heads=2))


def tiny_finetune():
    return dict(backbone=dict(arch=_tiny_arch(), init_cfg=None),
                head=dict(num_classes=3, in_channels=64))


# ImageClassifier(BootMAEViT) name -> reference fine-tuning name
REFERENCE_NAMES = [
    ('backbone.patch_embed.projection.', 'patch_embed.proj.'),
    ('backbone.ln2.', 'fc_norm.'), ('head.fc.', 'head.'),
    ('.ffn.layers.0.0.', '.mlp.fc1.'), ('.ffn.layers.1.', '.mlp.fc2.'),
    ('.ln1.', '.norm1.'), ('.ln2.', '.norm2.'),
    ('backbone.layers.', 'blocks.'), ('backbone.', '')]


def _image():
    return np.random.default_rng(0).integers(0, 256, (240, 300, 3),
                                             np.uint8)


def test_list_models_takes_our_names():
    from mmpretrain import list_models
    from mmpretrain.apis import ModelHub
    assert list_models('*bootmae*') == sorted(
        [PT_B, PT_L, FT_B, FT_L, LIN_B, LIN_L, SEG_B])
    weights = {PT_B: 'BootMAE_Base_800_PT.pth',
               PT_L: 'BootMAE_Large_800_PT.pth',
               FT_B: 'BootMAE_Base_800_FT.pth',
               FT_L: 'BootMAE_Large_800_FT.pth'}
    top1 = {FT_B: 84.2, FT_L: 85.9, LIN_B: 66.1, LIN_L: 77.1}
    for name in list_models('*bootmae*'):
        info = ModelHub._models_dict[name]  # get() would parse the config
        assert osp.isfile(info.config), info.config
        assert info.config.startswith(osp.join(REPO_ROOT, 'configs'))
        assert info.weights == (RELEASE + weights[name]
                                if name in weights else None)
        if name in top1:
            metrics = info.results[0].metrics
            assert metrics == {'Top 1 Accuracy': top1[name]}
    seg = ModelHub._models_dict[SEG_B].results[0]
    assert (seg.task, seg.dataset) == ('Semantic Segmentation', 'ADE20K')
    assert seg.metrics == {'mIoU': 49.12, 'mIoU (ms+flip)': 50.0}
    assert list_models('bootmae', task='Image Classification') == sorted(
        [FT_B, FT_L, LIN_B, LIN_L])


def test_get_model_loads_the_published_pretraining_checkpoint_by_name(
        tmp_path):
    """``get_model(name, pretrained=True)`` reads the metafile's release
    URL (mapped to a local copy: no network), converts the reference
    format, and FeatureExtractor embeds an image with the model."""
    from mmpretrain import FeatureExtractor, get_model
    torch.manual_seed(0)
    source = get_model(PT_B, **tiny_pretrain())
    source.init_weights()  # (sin-cos pos_embed)
    with torch.no_grad():
        for k, t in source.state_dict().items():
            if t.is_floating_point() and not k.endswith('pos_embed'):
                t.add_(0.1 * torch.randn_like(t))  # (pos_embed: sin-cos)
    state = source.state_dict()
    model_sd, ema_sd = bootmae_to_reference(state)
    torch.save({'model': model_sd, 'model_ema': ema_sd, 'epoch': 799},
               str(tmp_path / 'BootMAE_Base_800_PT.pth'))

    model = get_model(PT_B, pretrained=True, url_mapping=(
        RELEASE, str(tmp_path) + '/'), **tiny_pretrain())
    loaded = model.state_dict()
    for k, v in state.items():
        if k.endswith('attn.qkv.bias'):  # the reference has no k bias
            v = torch.cat([v[:64], torch.zeros(64), v[128:]])
        assert torch.equal(loaded[k], v), k

    features = FeatureExtractor(model=model, device='cpu')(_image())[0]
    # the encoder's tokens: cls + 14 x 14 patches of the 224 crop
    assert [f.shape for f in features] == [(197, 64)]
    # the backbone on the test pipeline's crop, preprocessed by the model
    crop = FeatureExtractor(model=model).pipeline(dict(img=_image()))
    inputs = model.data_preprocessor(default_collate([crop]))['inputs']
    with torch.no_grad():
        expected = model.backbone(inputs)[0][0]
    assert torch.allclose(features[0], expected)


def test_get_model_and_inferencers_take_a_finetuning_name(tmp_path):
    """Our fine-tuning name with our checkpoint: ``get_model``,
    ``inference_model`` and ``ImageClassificationInferencer``."""
    from mmpretrain import (
        ImageClassificationInferencer,
        get_model,
        inference_model,
    )
    torch.manual_seed(0)
    source = get_model(FT_B, **tiny_finetune())
    with torch.no_grad():
        source.head.fc.weight.normal_()
        source.backbone.ln2.weight.uniform_(0.5, 1.5)
    path = str(tmp_path / 'finetuned.pth')
    torch.save({'state_dict': source.state_dict(), 'meta': {}}, path)

    model = get_model(FT_B, pretrained=path, **tiny_finetune())
    for k, v in source.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k

    # the published fine-tuning checkpoint, by name (a local copy)
    reference = {}
    for k, v in source.state_dict().items():
        for old, new in REFERENCE_NAMES:
            k = k.replace(old, new)
        if k.endswith('attn.qkv.bias'):  # the reference has q/v biases
            q, _, v_bias = v.chunk(3)
            k = k[:-len('qkv.bias')]
            reference.update({k + 'q_bias': q, k + 'v_bias': v_bias})
        else:
            reference[k] = v
    torch.save({'model': reference, 'epoch': 99},
               str(tmp_path / 'BootMAE_Base_800_FT.pth'))
    published = get_model(FT_B, pretrained=True, url_mapping=(
        RELEASE, str(tmp_path) + '/'), **tiny_finetune())
    for k, v in source.state_dict().items():
        if k.endswith('attn.qkv.bias'):
            v = torch.cat([v[:64], torch.zeros(64), v[128:]])
        assert torch.equal(published.state_dict()[k], v), k
    result = inference_model(model, _image())
    assert 0 <= result['pred_label'] < 3
    inferencer = ImageClassificationInferencer(model=model, device='cpu')
    assert inferencer(_image())[0]['pred_label'] == result['pred_label']


def test_other_model_checkpoints_pass_through_mmengine_loaders(tmp_path):
    """A ``{'model': ...}`` checkpoint of another implementation (MAE's
    names) reaches mmengine as it is: the reference conversion applies to
    BootMAE's files only."""
    from mmengine.runner.checkpoint import _load_checkpoint
    mae = {'model': {'mask_token': torch.zeros(1, 1, 8),
                     'blocks.0.attn.qkv.weight': torch.zeros(24, 8),
                     'decoder_blocks.0.attn.qkv.weight': torch.zeros(24, 8)}}
    path = str(tmp_path / 'mae_pretrain_vit_base.pth')
    torch.save(mae, path)
    loaded = _load_checkpoint(path, map_location='cpu')
    assert loaded.keys() == {'model'}
    assert loaded['model'].keys() == mae['model'].keys()
