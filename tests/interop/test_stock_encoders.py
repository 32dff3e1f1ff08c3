"""mmpretrain's stock ``VisionTransformer``, ``MAEViT`` and ``BEiTViT``
inside BootMAE through the encoder contract: the all-patch encoding as
the stock forward, BEiT's shared bias at full size on the meta device and
between the visible patches, the BEiT project config; backbones that cannot
meet the contract are refused at build time naming the config key (the
per-class pretraining and loading back: test_vit_family_encoders.py)."""
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.runner.checkpoint import _load_checkpoint_with_prefix
from mmpretrain.registry import MODELS

import bootmae_mm  # noqa: F401
from helpers.bootmae import data_samples_with_masks, random_patch_mask
from helpers.repo import REPO_ROOT
from helpers.vit_family import VIT, bootmae_cfg

BEIT = dict(type='BEiTViT', use_abs_pos_emb=False, use_rel_pos_bias=False,
            use_shared_rel_pos_bias=True, layer_scale_init_value=0.1,
            out_type='raw')
STOCK = {
    'VisionTransformer': dict(type='VisionTransformer', out_type='raw'),
    'MAEViT': dict(type='MAEViT'),
    'BEiTViT': BEIT,
}


def model_cfg(backbone):
    model = bootmae_cfg(backbone)
    model.data_preprocessor = None
    model.num_masking_patches = None  # 12 of the tiny 4 x 4 grid below
    return model


def tiny_stock(name):
    return dict(STOCK[name], arch=VIT, img_size=32, patch_size=8)


def test_beit_shared_bias_at_vit_b_size_builds_and_steps_on_meta():
    """The ViT-B config with ``BEiTViT`` and its bias shared by the blocks
    (as BEiT pretrains; the other stock classes at full size:
    test_vit_family_encoders.py); before, a TypeError about ``with_cp``, a
    key the user never wrote, came from building the momentum target."""
    model_cfg_ = bootmae_cfg()
    model_cfg_.backbone.type = 'BEiTViT'
    model_cfg_.backbone.update(use_rel_pos_bias=False,
                               use_shared_rel_pos_bias=True)
    with torch.device('meta'):
        model = MODELS.build(model_cfg_)
        losses = model.tensor_losses(torch.randn(2, 3, 224, 224),
                                     torch.zeros(2, 14, 14, dtype=torch.bool),
                                     49)
        (losses['loss_pixel'] + losses['loss_feature']).backward()
    assert isinstance(model.backbone, MODELS.get('BEiTViT'))
    assert model.backbone.rel_pos_bias is not None
    assert model.backbone.cls_token.grad is not None
    assert model.feature_decoder.decoder_pred.out_features == 768


@pytest.mark.parametrize('name', list(STOCK))
def test_stock_encoder_encodes_all_patches_as_the_stock_class(name):
    """With no mask, the contract's ``encode`` is the stock class's forward
    (its 'raw' tokens after the final norm) with the same weights; the
    rest of pretraining and loading back: tests/interop/
    test_vit_family_encoders.py, a row per class."""
    torch.manual_seed(0)
    model = MODELS.build(model_cfg(tiny_stock(name)))
    model.init_weights()
    with torch.no_grad():  # every weight matters (e.g. BEiT's bias table)
        for param in model.backbone.parameters():
            param.add_(0.02 * torch.randn_like(param))
    stock = MODELS.build(tiny_stock(name))
    stock.load_state_dict(model.backbone.state_dict(), strict=True)
    model.eval()
    stock.eval()
    imgs = torch.randn(2, 3, 32, 32,
                       generator=torch.Generator().manual_seed(1))
    args = (None, ) if name == 'MAEViT' else ()  # MAEViT(x) masks at random
    with torch.no_grad():
        torch.testing.assert_close(model.backbone.encode(imgs).latent,
                                   stock(imgs, *args)[0], rtol=1e-5,
                                   atol=1e-5)


def test_beit_shared_bias_follows_the_visible_patches():
    """Each image's kept tokens get the shared bias between exactly their
    own positions: compared with one image at a time, indexing the stock
    bias table by position."""
    from bootmae_mm.models.backbones import EncoderOutput
    torch.manual_seed(0)
    model = MODELS.build(model_cfg(tiny_stock('BEiTViT')))
    encoder = model.backbone
    with torch.no_grad():  # a bias that matters
        encoder.rel_pos_bias.relative_position_bias_table.normal_()
    encoder.eval()
    g = torch.Generator().manual_seed(2)
    imgs = torch.randn(3, 3, 32, 32, generator=g)
    masks = torch.stack([random_patch_mask(g) for _ in range(3)])
    with torch.no_grad():
        out = encoder(imgs, masks)
        assert isinstance(out, EncoderOutput)
        full = encoder.rel_pos_bias()
        for b in range(3):
            visible = torch.nonzero(masks[b].flatten() == 0).flatten()
            keep = torch.cat((torch.zeros(1, dtype=torch.long),
                              visible + 1))
            bias = full.index_select(1, keep).index_select(2, keep)
            x, _ = encoder.patch_embed(imgs[b:b + 1])
            x = torch.cat((encoder.cls_token, x[:, visible]), dim=1)
            for i, layer in enumerate(encoder.layers):
                x = layer(x, bias)
                if i == 0:
                    torch.testing.assert_close(out.low_level[b:b + 1], x)
            torch.testing.assert_close(out.high_level[b:b + 1], x)


@pytest.mark.parametrize('backbone,error,words', [
    (dict(type='ResNet', depth=18), TypeError,
     'model.backbone.type=ResNet: not a BootMAE encoder'),
    (dict(type='SwinTransformer', arch='tiny'), TypeError,
     'it has no encode, build_target'),
    (dict(type='VisionTransformer', with_cls_token=False,
          out_type='featmap'), ValueError,
     'model.backbone.with_cls_token=False: BootMAE needs a cls token'),
    (dict(type='VisionTransformer', patch_cfg=dict(stride=4)), ValueError,
     'model.backbone.patch_cfg: BootMAE needs square patches'),
])
def test_a_backbone_that_cannot_meet_the_contract_is_refused(
        backbone, error, words):
    cfg = dict(backbone)
    if 'ResNet' not in cfg['type'] and 'Swin' not in cfg['type']:
        cfg.update(arch=VIT, img_size=32, patch_size=8)
    with pytest.raises(error) as err:
        MODELS.build(model_cfg(cfg))
    assert words in str(err.value), str(err.value)


def test_beit_project_config_pretrains_and_fine_tunes_as_beit(tmp_path):
    """projects/bootmae_beit_encoder with a tiny arch: one step, and the
    encoder into stock BEiTViT with a bias per block (BEiT's fine-tuning
    setting: mmpretrain copies the shared table into every block)."""
    cfg = Config.fromfile(osp.join(
        REPO_ROOT, 'projects', 'bootmae_beit_encoder', 'configs',
        'bootmae_beit-vit-b-p16_800e.py'))
    assert cfg.model.backbone.type == 'BEiTViT'
    cfg.model.backbone.update(arch=VIT, img_size=32, patch_size=8)
    cfg.model.update(data_preprocessor=None, num_masking_patches=12)
    model = MODELS.build(cfg.model)
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        model.backbone.rel_pos_bias.relative_position_bias_table.normal_(
            generator=g)
    model.copy_online_to_target()
    imgs = torch.randn(2, 3, 32, 32, generator=g)
    masks = torch.stack([random_patch_mask(g) for _ in range(2)])
    losses = model.loss(imgs, data_samples_with_masks(masks))
    (losses['loss_pixel'] + losses['loss_feature']).backward()
    table = model.backbone.rel_pos_bias.relative_position_bias_table
    assert table.grad.abs().sum() > 0

    ckpt = tmp_path / 'pretrain.pth'
    torch.save(dict(state_dict=model.state_dict()), ckpt)
    finetune = MODELS.build(dict(
        type='BEiTViT', arch=VIT, img_size=32, patch_size=8,
        use_abs_pos_emb=False, use_rel_pos_bias=True,
        use_shared_rel_pos_bias=False, out_type='avg_featmap'))
    state = _load_checkpoint_with_prefix('backbone.', str(ckpt))
    missing, unexpected = finetune.load_state_dict(state, strict=False)
    assert unexpected == ['ln1.weight', 'ln1.bias']  # pretraining's norm
    # the pooled output's new norm, and index tables the class computes
    assert all(k.startswith('ln2.') or k.endswith('relative_position_index')
               for k in missing), missing
    for layer in finetune.layers:
        torch.testing.assert_close(layer.attn.relative_position_bias_table,
                                   table.detach(), rtol=0, atol=0)
