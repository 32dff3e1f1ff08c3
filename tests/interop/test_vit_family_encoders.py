"""Every ViT-family backbone of mmpretrain 1.2 as a BootMAE encoder (README
"Mixing with mmpretrain", one row each): ``configs/bootmae_vit-b_800e.py``
with only ``model.backbone`` changed builds and steps at full size on the
meta device; with a tiny arch and real numbers it takes a loss, a backward
and a momentum update, and its saved encoder loads strictly into the stock
class and into the classifier of mmpretrain's own fine-tuning config.
The ViT-family classes that cannot be an encoder are refused with why."""
import inspect
import os.path as osp
import re

import pytest
import torch
from mmengine.config import Config
from mmengine.runner.checkpoint import _load_checkpoint_with_prefix
from mmpretrain.registry import MODELS

import bootmae_mm  # noqa: F401
from helpers.bootmae import data_samples_with_masks, random_patch_mask
from helpers.repo import REPO_ROOT
from helpers.vit_family import (
    HIVIT,
    MMPRETRAIN_CONFIGS,
    REFUSED,
    ROWS,
    VIT,
    bootmae_cfg,
    tiny_backbone,
)


def test_every_registered_vit_family_class_has_a_tested_readme_row():
    """mmpretrain's registry, not a list: every registered class of a family
    (or of a refused kind) is a row here and in the README table."""
    from bootmae_mm.interop.stock_encoders import (
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
        losses = model.tensor_losses(torch.randn(2, 3, 224, 224),
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
    qkv = [k for k in trained if k.endswith('qkv.weight')]
    assert online[qkv[0]].grad.abs().sum() > 0  # the first block learns

    # one SGD step, then the EMA update of the momentum target
    target = dict(model.target_encoder.named_buffers())
    key = qkv[-1]
    torch.testing.assert_close(target[key], online[key].detach(),
                               rtol=0, atol=0)
    torch.optim.SGD([online[k] for k in trained], lr=1.).step()
    before = target[key].clone()
    assert not torch.equal(before, online[key])
    model.update_target(0.9)
    torch.testing.assert_close(target[key],
                               0.9 * before + 0.1 * online[key].detach())
    for k, buf in model.backbone.named_buffers():  # e.g. BEiT's indices
        assert torch.equal(target[k], buf), k

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
    # and computes what the stock class computes (a masked-modeling class
    # masks at random unless its second argument is None; MFFViT even then:
    # the same seed for both)
    model.eval()
    stock.eval()
    args = (None, ) * (len(inspect.signature(stock.forward).parameters) - 1)
    with torch.no_grad():
        torch.manual_seed(2)
        ours = model.backbone(imgs, *args)
        torch.manual_seed(2)
        torch.testing.assert_close(ours, stock(imgs, *args), rtol=0, atol=0)

    # mmpretrain's own fine-tuning config, at the tiny size
    ft_path, ft_keys, new_keys = ROWS[name][2:]
    ft = Config.fromfile(osp.join(MMPRETRAIN_CONFIGS, ft_path)).model
    ft.backbone.update(arch=ROWS[name][1], img_size=32, patch_size=8,
                       init_cfg=None, **ft_keys)
    # stock RevViT concatenates its two streams (fusion_mode='concat')
    width = ROWS[name][1]['embed_dims']
    ft.head.update(num_classes=5, in_channels=(
        2 * width if name == 'RevVisionTransformer' else width))
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


@pytest.mark.parametrize('backbone,words', [
    (dict(type='RevVisionTransformer'), "model.backbone.with_cls_token=False"
     ", fusion_mode='concat'"),
    (dict(type='RevVisionTransformer', with_cls_token=True),
     "set fusion_mode='avg'"),
    (dict(type='CAEPretrainViT'), 'set layer_scale_init_value=0.1'),
    (dict(type='ViTEVA02', with_cls_token=False, out_type='avg_featmap'),
     'set with_cls_token=True'),
    (dict(type='HiViT', kernel_size=8, pad_size=2),
     'model.backbone.kernel_size: BootMAE needs inner patches that do not '
     'overlap (kernel (8, 8), stride (2, 2)); leave kernel_size and '
     'pad_size out'),
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
