"""Show what a BootMAE checkpoint reconstructs on any image.

    python tools/visualize_reconstruction.py CONFIG CHECKPOINT IMAGE \
        [--out FILE] [--seed N] [--scale S]

The image is resized (short side) and centre-cropped to the config's
``img_size``, masked by the config's ``BootMAEMaskGenerator`` (seeded), and
written as one row of the grid that ``ReconstructionVisualizationHook``
writes during training: original | masked input | prediction (de-normalized
per patch) | prediction pasted into the visible image. CHECKPOINT is a
checkpoint of a pretraining run of ours or a reference BootMAE pretraining
checkpoint (converted on the fly, or by
``tools/model_converters/bootmae_official_to_mm.py``).
"""
import argparse
import os
import os.path as osp
import sys

sys.path.insert(0, osp.join(osp.dirname(osp.abspath(__file__)), '..'))

import mmcv  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from mmengine.config import Config, DictAction  # noqa: E402
from mmengine.dataset import Compose, default_collate  # noqa: E402
from mmengine.fileio import get as read_bytes  # noqa: E402

import bootmae_mm  # noqa: E402,F401
from bootmae_mm.interop.checkpoint_loading import (  # noqa: E402
    checkpoint_state_dict,
    load_encoder_state_dict,
)
from bootmae_mm.visualization import reconstruction_grid_from_batch  # noqa: E402

# the parts of BootMAE a reconstruction runs through
NEEDED = ('backbone.', 'pixel_decoder.')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('config', help='the pretraining config')
    parser.add_argument('checkpoint', help='a BootMAE pretraining checkpoint')
    parser.add_argument('image', help='any image file')
    parser.add_argument('--out', help='output PNG (default: '
                        '<image name>_reconstruction.png here)')
    parser.add_argument('--seed', type=int, default=0,
                        help='seed of the random mask (default 0)')
    parser.add_argument('--scale', type=int, default=None,
                        help='upscale factor of the cells (default: cells '
                        'at least 128 px)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings')
    return parser.parse_args(argv)


def find_mask_transform(cfg: Config) -> dict:
    """The ``BootMAEMaskGenerator`` of the config's training pipeline."""
    from bootmae_mm.datasets.dataset_wrappers import find_dataset_with
    _, dataset = find_dataset_with(cfg.train_dataloader.dataset, 'pipeline')
    for t in dataset.get('pipeline', []):
        if t.get('type') == 'BootMAEMaskGenerator':
            return dict(t)
    raise KeyError('train_dataloader.dataset.pipeline has no '
                   'BootMAEMaskGenerator: not a BootMAE pretraining config?')


def check_image(path: str) -> None:
    """Fail with a message naming ``path`` if it is not a readable image."""
    try:
        img = mmcv.imfrombytes(read_bytes(path))
    except Exception as e:  # missing file, permission, decoder error
        raise SystemExit(f'Cannot read image {path}: {e}')
    if img is None or img.size == 0:
        raise SystemExit(f'Cannot read image {path}: not a decodable image '
                         'file.')


def load_checked(model: torch.nn.Module, filename: str) -> str:
    """Load the encoder and pixel decoder of ``filename`` (a path or an
    ``http(s)://`` URL) into ``model``; fail listing every differently
    shaped or missing key if the checkpoint does not fit the config.
    Returns the checkpoint kind."""
    try:
        state, kind = checkpoint_state_dict(filename)
    except Exception as e:
        raise SystemExit(f'Cannot load checkpoint {filename}: {e}')
    state = {k: v for k, v in state.items() if k.startswith(NEEDED)}
    try:
        load_encoder_state_dict(
            model, state, f'Checkpoint {filename} ({kind})',
            resizable=lambda *args: False,
            required=lambda key: key.startswith(NEEDED), target='the config')
    except ValueError as e:
        raise SystemExit(str(e))
    return kind


def main(argv=None):
    args = parse_args(argv)
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    check_image(args.image)

    from mmengine.registry import init_default_scope
    from mmpretrain.registry import MODELS
    init_default_scope(cfg.get('default_scope', 'mmpretrain'))
    model = MODELS.build(cfg.model)
    kind = load_checked(model, args.checkpoint)
    model.eval()

    mask_cfg = find_mask_transform(cfg)
    size = mask_cfg.get('img_size', 224)
    pipeline = Compose([
        dict(type='LoadImageFromFile'),
        dict(type='ResizeEdge', scale=size if isinstance(size, int)
             else min(size), edge='short', backend='pillow',
             interpolation='bicubic'),
        dict(type='CenterCrop', crop_size=size),
        mask_cfg,
        dict(type='PackInputs'),
    ])
    np.random.seed(args.seed)
    batch = default_collate([pipeline(dict(img_path=args.image))])
    grid = mmcv.rgb2bgr(
        reconstruction_grid_from_batch(model, batch, args.scale))

    out = args.out or osp.splitext(osp.basename(args.image))[0] + \
        '_reconstruction.png'
    if osp.dirname(out):
        os.makedirs(osp.dirname(out), exist_ok=True)
    if not mmcv.imwrite(grid, out):
        raise SystemExit(f'Cannot write {out}')
    print(f'{args.image} ({kind} checkpoint {args.checkpoint}, '
          f'{int(batch["data_samples"][0].mask.sum())} patches masked, '
          f'seed {args.seed}) -> {out}')
    return out


if __name__ == '__main__':
    main()
