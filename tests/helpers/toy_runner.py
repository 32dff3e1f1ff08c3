"""A tiny real mmengine Runner on random data, with the default runtime of
``configs/_base_/default_runtime.py`` (atomic checkpoints, NonFiniteLossHook),
for the reliability tests. Also runnable as a script, so that a test can
SIGKILL a real training process::

    python tests/helpers/toy_runner.py WORK_DIR [--max-iters 6] [--interval 2]
        [--pad-numel N] [--slow-fsync] [--resume]
"""
import argparse
import os
import os.path as osp
import sys
import time
import uuid

import torch
from mmengine.model import BaseModel
from torch import nn

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DEFAULT_RUNTIME = osp.join(REPO_ROOT, 'configs', '_base_',
                           'default_runtime.py')


class ToyModel(BaseModel):
    """Linear regression; ``pad_numel`` floats of buffer make the
    checkpoint big; ``nan_at`` / ``inf_grad_at`` (1-based training
    call) poison the loss / the gradient."""

    def __init__(self, pad_numel=0, nan_at=None, inf_grad_at=None,
                 overflow=False):
        super().__init__()
        self.linear = nn.Linear(4, 1)
        self.register_buffer('pad', torch.zeros(pad_numel))
        self.nan_at, self.inf_grad_at = nan_at, inf_grad_at
        self.overflow = overflow
        self.calls = 0

    def forward(self, inputs, targets=None, mode='tensor'):
        pred = self.linear(inputs.float()).squeeze(1)
        if mode != 'loss':
            return pred
        self.calls += 1
        mse = ((pred - targets.float())**2).mean()
        reg = 1e-3 * self.linear.weight.pow(2).sum()
        if self.calls == self.nan_at:
            mse = mse * float('nan')
        if self.calls == self.inf_grad_at:  # finite loss, Inf gradient
            w = self.linear.weight
            mse = mse + (w - w.detach()).sum().sqrt()
        if self.overflow:  # finite loss that overflows once scaled
            mse = mse + 1e36 * self.linear.weight.abs().sum()
        return dict(loss_mse=mse, loss_reg=reg)


def toy_dataset(n=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    y = x @ torch.tensor([1., -2., 3., .5]) + 0.1
    return [dict(inputs=x[i], targets=y[i]) for i in range(n)]


def build_toy_runner(work_dir, max_iters=6, interval=2, max_keep_ckpts=3,
                     resume=False, optim_wrapper=None, **model_kwargs):
    """A Runner training the toy model for ``max_iters`` iterations with a
    checkpoint every ``interval`` iterations, and the default runtime's
    hooks, backend and randomness."""
    from mmengine.config import Config
    from mmengine.runner import Runner

    import bootmae_mm  # noqa: F401
    cfg = Config.fromfile(DEFAULT_RUNTIME)
    cfg.default_hooks.checkpoint.update(
        by_epoch=False, interval=interval, max_keep_ckpts=max_keep_ckpts)
    cfg.default_hooks.logger.interval = 1
    cfg.default_hooks.pop('visualization')
    cfg.env_cfg.dist_cfg.backend = 'gloo'
    return Runner(
        model=ToyModel(**model_kwargs),
        work_dir=str(work_dir),
        experiment_name=f'toy_{uuid.uuid4().hex[:8]}',
        train_dataloader=dict(
            dataset=toy_dataset(), batch_size=2, num_workers=0,
            sampler=dict(type='DefaultSampler', shuffle=True),
            collate_fn=dict(type='default_collate')),
        train_cfg=dict(by_epoch=False, max_iters=max_iters),
        optim_wrapper=optim_wrapper or dict(
            optimizer=dict(type='AdamW', lr=1e-2)),
        default_hooks=cfg.default_hooks,
        env_cfg=cfg.env_cfg,
        randomness=cfg.randomness,
        default_scope=cfg.default_scope,
        log_processor=dict(by_epoch=False),
        resume=resume)


def _slow_fsync_after_first_save(work_dir):
    """Simulate a slow disk for every save after the first: the temporary
    file is written, then fsync hangs (the test kills us there)."""
    real_fsync = os.fsync

    def fsync(fd):
        if osp.exists(osp.join(work_dir, 'last_checkpoint')):
            time.sleep(120)
        real_fsync(fd)

    os.fsync = fsync


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument('work_dir')
    parser.add_argument('--max-iters', type=int, default=6)
    parser.add_argument('--interval', type=int, default=2)
    parser.add_argument('--pad-numel', type=int, default=0)
    parser.add_argument('--slow-fsync', action='store_true')
    parser.add_argument('--resume', action='store_true')
    args = parser.parse_args(argv)
    runner = build_toy_runner(args.work_dir, args.max_iters, args.interval,
                              resume=args.resume, pad_numel=args.pad_numel)
    if args.slow_fsync:
        _slow_fsync_after_first_save(args.work_dir)
    runner.train()


if __name__ == '__main__':
    sys.path.insert(0, REPO_ROOT)
    main()
