"""Convert a reference BootMAE checkpoint (github.com/LightDXY/BootMAE) into
an mmpretrain checkpoint of this project.

    python tools/model_converters/bootmae_official_to_mm.py SRC DST \
        [--config CONFIG]

- A pretraining checkpoint (``model``, optionally ``model_ema``) becomes a
  ``BootMAE`` state dict (encoder, both decoders, momentum target) that
  ``configs/bootmae_vit-b_800e.py`` / ``-l_800e.py`` load strictly.
- A fine-tuning checkpoint (``model`` with ``fc_norm`` and ``head``) becomes
  an ``ImageClassifier`` state dict (``BootMAEViT`` with
  ``out_type='avg_featmap'``, ``final_norm=False``; ``LinearClsHead``).

The checkpoint is read with ``weights_only=True`` (plus the reference's
``argparse.Namespace`` of arguments): a file holding any other Python
object is refused. Before saving, the model is built from the config (by
default the one matching the encoder width and depth) and the converted
weights are loaded into it strictly.
"""
import argparse
import os
import os.path as osp
import sys

import torch

import bootmae_mm  # noqa: F401  (registers our modules, applies shims)
from bootmae_mm.interop.checkpoint_files import safe_load_checkpoint
from bootmae_mm.interop.reference_mapping import (
    ReferenceMappingError,
    reference_finetune_to_vit,
    reference_to_bootmae,
)

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
# (width, depth) -> (pretraining config, mmpretrain arch)
KNOWN = {
    (768, 12): ('configs/bootmae_vit-b_800e.py', 'b'),
    (1024, 24): ('configs/bootmae_vit-l_800e.py', 'l'),
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('src', help='reference checkpoint (.pth, a path '
                        'or an http(s):// URL)')
    parser.add_argument('dst', help='output checkpoint')
    parser.add_argument(
        '--config',
        help='config whose ``model`` receives the weights (default: chosen '
        'from the encoder width and depth)')
    return parser.parse_args(argv)


def load_reference(path):
    ckpt = safe_load_checkpoint(path)  # a file or an http(s):// URL
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get('model'), dict):
        raise ReferenceMappingError(
            f'{path}: expected a reference checkpoint, a dict with the '
            "weights under 'model'; found "
            f'{sorted(ckpt) if isinstance(ckpt, dict) else type(ckpt)}.')
    return ckpt


def encoder_shape(sd):
    width = sd['cls_token'].shape[-1]
    depth = len({k.split('.')[1] for k in sd if k.startswith('blocks.')})
    return width, depth


def model_config(args, sd, finetune):
    from mmengine.config import Config
    if args.config:
        return Config.fromfile(args.config).model, args.config
    width, depth = encoder_shape(sd)
    if (width, depth) not in KNOWN:
        raise ReferenceMappingError(
            f'{args.src}: no default config for a {width}-wide, {depth}-'
            'block encoder; pass --config.')
    path, arch = KNOWN[(width, depth)]
    if not finetune:
        return Config.fromfile(osp.join(REPO, path)).model, path
    patch = sd['patch_embed.proj.weight'].shape[-1]
    side = int(round((sd['pos_embed'].shape[1] - 1)**0.5))
    return dict(
        type='ImageClassifier',
        backbone=dict(type='BootMAEViT', arch=arch, img_size=side * patch,
                      patch_size=patch, out_type='avg_featmap',
                      final_norm='norm.weight' in sd),
        head=dict(type='LinearClsHead', num_classes=sd['head.weight'].shape[0],
                  in_channels=width)), f'ImageClassifier(BootMAEViT-{arch})'


def check_strict(model_cfg, state_dict, what):
    """Build the model (on the meta device: no memory, no init) and load
    ``state_dict`` strictly into it: names and shapes must all match."""
    from mmpretrain.registry import MODELS
    with torch.device('meta'):
        model = MODELS.build(model_cfg)
    try:
        model.load_state_dict(state_dict, strict=True, assign=True)
    except RuntimeError as e:
        raise ReferenceMappingError(
            f'the converted weights do not load strictly into {what}:\n{e}'
        ) from None


def convert(args):
    ckpt = load_reference(args.src)
    sd = ckpt['model']
    finetune = not any(k.startswith('decode_blocks') for k in sd)
    if finetune:
        converted = reference_finetune_to_vit(sd)
    else:
        converted = reference_to_bootmae(sd, ckpt.get('model_ema'))
    cfg, cfg_name = model_config(args, sd, finetune)
    check_strict(cfg, converted, cfg_name)

    meta = dict(
        source=osp.basename(args.src),
        converted_from='LightDXY/BootMAE',
        kind='finetune' if finetune else 'pretrain',
        config=cfg_name,
        momentum_target='model_ema' if 'model_ema' in ckpt and not finetune
        else 'copy of model',
        epoch=ckpt.get('epoch') if isinstance(ckpt.get('epoch'), int)
        else None)
    os.makedirs(osp.dirname(osp.abspath(args.dst)), exist_ok=True)
    tmp = args.dst + '.tmp'
    torch.save(dict(state_dict=converted, meta=meta), tmp)
    os.replace(tmp, args.dst)
    print(f'{args.src}: {len(sd)} reference tensors -> {len(converted)} '
          f'({meta["kind"]}, target: {meta["momentum_target"]}), loaded '
          f'strictly into {cfg_name}; saved {args.dst}')


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        convert(args)
    except Exception as e:  # one clear message, no traceback
        print(f'error: {type(e).__name__}: {e}', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
