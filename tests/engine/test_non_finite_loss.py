"""NonFiniteLossHook: a NaN/Inf loss stops the run naming the iteration and
the loss terms, at the latest before the next checkpoint, and no checkpoint
of poisoned weights is ever written."""
import functools
import glob
import math
import os.path as osp

import pytest
import torch
from mmengine.hooks import LoggerHook

import bootmae_mm  # noqa: F401
from bootmae_mm.engine.atomic_backend import read_last_checkpoint
from bootmae_mm.interop.checkpoint_files import safe_torch_load
from helpers.toy_runner import build_toy_runner


def _ckpt_iters(work_dir):
    return sorted(int(osp.basename(p)[5:-4])
                  for p in glob.glob(osp.join(work_dir, 'iter_*.pth')))


def _assert_last_good(work_dir, last_iter):
    assert _ckpt_iters(work_dir)[-1] == last_iter
    last = read_last_checkpoint(work_dir)
    assert last == osp.join(str(work_dir), f'iter_{last_iter}.pth')
    ckpt = safe_torch_load(last)
    assert ckpt['meta']['iter'] == last_iter
    assert all(torch.isfinite(v).all() for v in ckpt['state_dict'].values())
    return last


@pytest.mark.parametrize('nan_at,log_interval', [(4, 1), (3, 5)])
def test_nan_loss_stops_before_the_next_checkpoint(tmp_path, nan_at,
                                                   log_interval):
    """Checkpoints every 2 iterations, NaN loss at ``nan_at``: read at once
    when every iteration logs, or only before the checkpoint of iteration
    4 when logging is every 5. The error names the bad iteration, every
    loss term and the last good checkpoint; iteration 4 is never saved."""
    runner = build_toy_runner(tmp_path, max_iters=8, interval=2,
                              nan_at=nan_at)
    next(h for h in runner.hooks
         if isinstance(h, LoggerHook)).interval = log_interval
    with pytest.raises(RuntimeError) as info:
        runner.train()
    msg = str(info.value)
    assert f'Non-finite loss at iteration {nan_at} (epoch 1)' in msg
    assert 'detected at iteration 4' in msg
    assert 'loss=nan' in msg and 'loss_mse=nan' in msg
    assert 'loss_reg=0.00' in msg  # the finite term is reported too
    last = _assert_last_good(tmp_path, 2)  # iteration 4 was never saved
    assert f'the last good checkpoint is kept at {last}' in msg


def test_nan_loss_before_any_checkpoint(tmp_path):
    runner = build_toy_runner(tmp_path, max_iters=8, interval=2, nan_at=1)
    with pytest.raises(RuntimeError, match='iteration 1 .*no checkpoint has '
                       'been saved yet'):
        runner.train()
    assert _ckpt_iters(tmp_path) == []


def test_inf_gradient_with_finite_loss_is_not_saved(tmp_path):
    # a finite loss whose gradient is Inf poisons the weights; the save at
    # that iteration is refused, the previous checkpoint stays the last one
    runner = build_toy_runner(tmp_path, max_iters=8, interval=2,
                              inf_grad_at=4)
    with pytest.raises(RuntimeError, match='Refusing to save a checkpoint at '
                       r"iteration 4 .*parameters \['linear.weight'"):
        runner.train()
    _assert_last_good(tmp_path, 2)


def test_fp16_overflow_is_skipped_not_nan(tmp_path, monkeypatch):
    # AmpOptimWrapper needs a GPU in mmengine; on CPU we give it torch's
    # CPU GradScaler, the same dynamic loss-scaling logic.
    from mmengine.optim.optimizer import amp_optimizer_wrapper as amp
    if not torch.cuda.is_available():
        monkeypatch.setattr(amp, 'is_cuda_available', lambda: True)
        monkeypatch.setattr(amp, 'GradScaler',
                            functools.partial(torch.amp.GradScaler, 'cpu'))
    runner = build_toy_runner(
        tmp_path, max_iters=4, interval=2, overflow=True,
        optim_wrapper=dict(type='AmpOptimWrapper', loss_scale='dynamic',
                           dtype=torch.bfloat16,
                           optimizer=dict(type='AdamW', lr=1e-2)))
    before = runner.model.linear.weight.detach().clone()
    runner.train()  # no RuntimeError: each overflowing step is skipped
    scaler = runner.optim_wrapper.loss_scaler
    assert scaler.get_scale() < 65536.0  # it did overflow and back off
    assert torch.equal(runner.model.linear.weight.detach(), before)
    loss = runner.message_hub.get_scalar('train/loss').current()
    assert math.isfinite(loss) and loss > 1e30
    _assert_last_good(tmp_path, 4)


def test_reads_at_the_iterations_the_checkpoint_hook_saves(tmp_path,
                                                           monkeypatch):
    """Checkpoints every 3 iterations from ``save_begin=1`` (saved after
    iterations 1, 4, 7 and the last, 9), logging every 10, epochs of 8
    iterations: the loss terms are read at those iterations and at the
    epoch's end, not at multiples of 3."""
    from mmengine.hooks import CheckpointHook

    from bootmae_mm.engine.hooks.deferred_reads import NonFiniteLossHook
    runner = build_toy_runner(tmp_path, max_iters=9, interval=3,
                              max_keep_ckpts=5)
    next(h for h in runner.hooks
         if isinstance(h, LoggerHook)).interval = 10
    next(h for h in runner.hooks
         if isinstance(h, CheckpointHook)).save_begin = 1
    hook = next(h for h in runner.hooks if isinstance(h, NonFiniteLossHook))
    read_at = []
    real_read = type(hook).read

    def read(self, runner, pending, all_ranks=True):
        if all_ranks:  # the reads of after_train_iter / after_train
            read_at.append(runner.iter + 1)
        return real_read(self, runner, pending, all_ranks)

    monkeypatch.setattr(type(hook), 'read', read)
    runner.train()
    assert _ckpt_iters(tmp_path) == [1, 4, 7, 9]
    assert read_at == [1, 4, 7, 8, 9]
