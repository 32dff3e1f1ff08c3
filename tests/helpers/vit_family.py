"""mmpretrain's ViT-family backbones as BootMAE encoders: the rows of the
README's "Mixing with mmpretrain" table (tiny archs, the keys each needs,
mmpretrain's fine-tuning config) and the ViT-B config with another
backbone, shared by ``tests/interop``."""
import copy
import functools
import os.path as osp

import mmpretrain
from mmengine.config import Config

from helpers.tiny_pretrain import PRETRAIN_CONFIG

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
    return Config.fromfile(PRETRAIN_CONFIG).model


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
