"""Generators shared by the tests: tiny image folders, tiny configs and a
way to run the tools in a subprocess.

Import them in a test with ``from helpers import ...`` (pytest puts
``tests/`` on ``sys.path``).
"""
import importlib.util
import os
import os.path as osp
import socket
import subprocess
import sys

import numpy as np

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def make_image_folder(root, classes=('cat', 'dog'), per_class=8, size=32,
                      ext='png', seed=0):
    """Write an ImageNet-layout folder ``root/<class>/<i>.<ext>`` of random
    RGB images and return ``root`` (a str).

    mmpretrain's ``CustomDataset(data_root=root)`` (no ``ann_file``) reads it
    with one class per sub-folder, in sorted order.
    """
    import cv2
    rng = np.random.default_rng(seed)
    root = str(root)
    for cls in classes:
        os.makedirs(osp.join(root, cls), exist_ok=True)
        for i in range(per_class):
            img = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
            assert cv2.imwrite(osp.join(root, cls, f'{i:03d}.{ext}'), img)
    return root


def tiny_vit_classifier(num_classes=2, img_size=32, embed_dims=32):
    """An mmpretrain ``ImageClassifier`` config with a one-layer ViT."""
    return dict(
        type='ImageClassifier',
        data_preprocessor=dict(
            num_classes=num_classes, mean=[127.5] * 3, std=[127.5] * 3,
            to_rgb=True),
        backbone=dict(
            type='VisionTransformer',
            arch=dict(embed_dims=embed_dims, num_layers=1, num_heads=2,
                      feedforward_channels=2 * embed_dims),
            img_size=img_size, patch_size=16, drop_rate=0.0),
        head=dict(
            type='VisionTransformerClsHead', num_classes=num_classes,
            in_channels=embed_dims,
            loss=dict(type='CrossEntropyLoss', loss_weight=1.0)))


def tiny_cls_config(data_root, work_dir=None, max_iters=2, batch_size=2,
                    checkpoint_interval=1, model=None, **extra):
    """A complete mmpretrain training config (dict) for a tiny ViT on the
    folder made by :func:`make_image_folder`, iteration based, no
    validation, a checkpoint every ``checkpoint_interval`` iterations."""
    cfg = dict(
        default_scope='mmpretrain',
        custom_imports=dict(imports=['bootmae_mm'],
                            allow_failed_imports=False),
        model=model or tiny_vit_classifier(),
        train_dataloader=dict(
            batch_size=batch_size, num_workers=0,
            sampler=dict(type='DefaultSampler', shuffle=True),
            dataset=dict(
                type='CustomDataset', data_root=str(data_root),
                pipeline=[dict(type='LoadImageFromFile'),
                          dict(type='PackInputs')])),
        train_cfg=dict(by_epoch=False, max_iters=max_iters),
        optim_wrapper=dict(optimizer=dict(type='AdamW', lr=1e-3)),
        default_hooks=dict(
            timer=dict(type='IterTimerHook'),
            logger=dict(type='LoggerHook', interval=1),
            param_scheduler=dict(type='ParamSchedulerHook'),
            checkpoint=dict(type='CheckpointHook', by_epoch=False,
                            interval=checkpoint_interval),
            sampler_seed=dict(type='DistSamplerSeedHook')),
        env_cfg=dict(cudnn_benchmark=False,
                     dist_cfg=dict(backend='gloo')),
        log_processor=dict(by_epoch=False),
        randomness=dict(seed=0),
        log_level='INFO',
    )
    if work_dir is not None:
        cfg['work_dir'] = str(work_dir)
    cfg.update(extra)
    return cfg


def write_config(path, cfg):
    """Write a config dict as a python config file and return its path."""
    from mmengine.config import Config
    path = str(path)
    Config(cfg).dump(path)
    return path


def free_port():
    """A TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def run_tool(args, cwd=None, env=None, timeout=300):
    """Run ``args`` (a list; a ``.py`` first item runs with this python)
    from the repository root and return the ``CompletedProcess`` with
    ``stdout`` holding stdout and stderr together."""
    if args[0].endswith('.py'):
        args = [sys.executable] + list(args)
    full_env = dict(os.environ)
    full_env['PYTHONPATH'] = os.pathsep.join(
        [REPO_ROOT] + ([full_env['PYTHONPATH']]
                       if full_env.get('PYTHONPATH') else []))
    full_env.update(env or {})
    return subprocess.run(
        args, cwd=cwd or REPO_ROOT, env=full_env, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, timeout=timeout)


def load_tool(path):
    """Import the script at ``path`` (relative to the repository root, e.g.
    ``tools/train.py``) as a module, to call its ``main`` in this process:
    much faster than a subprocess for checks that fail early."""
    name = osp.splitext(osp.basename(path))[0]
    spec = importlib.util.spec_from_file_location(
        f'bootmae_tool_{name}', osp.join(REPO_ROOT, path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module

