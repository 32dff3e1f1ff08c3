"""Which files of bootmae_mm run code during training steps.

Builds ``configs/bootmae_vit-b_800e.py`` (or another pretraining config)
with a tiny encoder on a generated plain image folder, fitted to the
machine as ``tools/train.py`` does (fp32 on the CPU),
runs mmengine's Runner, and records with ``sys.setprofile`` (and
``threading.setprofile``) every function call from the start of
iteration ``--first`` to the end of iteration ``--last`` (1-based, after
the build, inside one epoch). Prints the bootmae_mm files that ran code and
their count; the Runner stops after the last traced iteration.

The data pipeline runs in the main process (``--workers 0``, the default),
so its files are counted; with ``--workers N`` it runs in worker
processes, as in production, and is not traced.

Example::

    python tools/analysis/trace_step_files.py configs/bootmae_vit-b_800e.py
"""
import argparse
import os
import os.path as osp
import sys
import tempfile
import threading

import numpy as np
from PIL import Image

import bootmae_mm

PACKAGE_DIR = osp.dirname(osp.abspath(bootmae_mm.__file__))
REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TINY_ARCH = dict(embed_dims=32, num_layers=2, num_heads=2,
                 feedforward_channels=64)
IMG_SIZE, PATCH_SIZE, NUM_MASKED = 32, 8, 12


class _StopTrace(Exception):
    pass


def make_image_folder(root, num_images=48, size=48):
    """A plain folder of random JPEG pictures (no class folders)."""
    rng = np.random.default_rng(0)
    os.makedirs(root, exist_ok=True)
    for i in range(num_images):
        pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(osp.join(root, f'{i:03d}.jpg'))
    return root


def tiny_cfg(config, data_root, work_dir, workers):
    """The config with a tiny encoder on ``data_root``, fp32 on the CPU."""
    from mmengine.config import Config
    cfg = Config.fromfile(config)
    model = cfg.model
    model.backbone.update(arch=TINY_ARCH, img_size=IMG_SIZE,
                          patch_size=PATCH_SIZE)
    model.num_masking_patches = NUM_MASKED
    if 'pixel_decoder' in model:
        model.pixel_decoder.update(embed_dims=32)
    pipeline = cfg.train_dataloader.dataset.dataset.pipeline
    for step in pipeline:
        if step['type'] == 'RandomResizedCrop':
            step['scale'] = IMG_SIZE
        if step['type'] == 'BootMAEMaskGenerator':
            step.update(img_size=IMG_SIZE, patch_size=PATCH_SIZE,
                        num_masking_patches=NUM_MASKED,
                        num_block_masking_patches=8, min_num_patches=2,
                        max_num_patches=None)
    cfg.train_dataloader.dataset.dataset = dict(
        type='CustomDataset', data_root=data_root, with_label=False,
        pipeline=pipeline)
    cfg.train_dataloader.update(batch_size=4, num_workers=workers,
                                persistent_workers=workers > 0)
    # as tools/train.py fits it: on the CPU fp32 (the plain OptimWrapper,
    # AmpOptimWrapper needs a GPU) and no pinned memory
    from bootmae_mm.engine.device_fallback import fit_to_device
    fit_to_device(cfg)
    cfg.env_cfg.dist_cfg = dict(backend='gloo')
    cfg.work_dir = work_dir
    cfg.log_level = 'WARNING'
    return cfg


def trace(cfg, first, last):
    """Run the Runner and return the set of bootmae_mm files whose code
    ran during iterations ``first`` .. ``last`` (1-based)."""
    from mmengine.hooks import Hook
    from mmengine.runner import Runner

    files = set()

    def profile(frame, event, arg):
        if event == 'call':
            name = frame.f_code.co_filename
            if name.startswith(PACKAGE_DIR):
                files.add(osp.relpath(name, osp.dirname(PACKAGE_DIR)))

    class TraceHook(Hook):
        priority = 'HIGHEST'

        def before_train_iter(self, runner, batch_idx, data_batch=None):
            if runner.iter + 1 == first:
                threading.setprofile(profile)
                sys.setprofile(profile)

        def after_train_iter(self, runner, batch_idx, data_batch=None,
                             outputs=None):
            if runner.iter + 1 == last:
                sys.setprofile(None)
                threading.setprofile(None)
                raise _StopTrace

    runner = Runner.from_cfg(cfg)
    runner.register_hook(TraceHook(), priority='LOWEST')
    try:
        runner.train()
    except _StopTrace:
        pass
    finally:
        sys.setprofile(None)
        threading.setprofile(None)
    return files


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config', nargs='?', default=osp.join(
        REPO_ROOT, 'configs', 'bootmae_vit-b_800e.py'))
    parser.add_argument('--first', type=int, default=3)
    parser.add_argument('--last', type=int, default=6)
    parser.add_argument('--workers', type=int, default=0)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        root = make_image_folder(osp.join(tmp, 'images'))
        cfg = tiny_cfg(args.config, root, osp.join(tmp, 'work'),
                       args.workers)
        files = trace(cfg, args.first, args.last)
    for name in sorted(files):
        print(name)
    print(f'{len(files)} files of bootmae_mm ran code in iterations '
          f'{args.first}-{args.last}')


if __name__ == '__main__':
    main()
