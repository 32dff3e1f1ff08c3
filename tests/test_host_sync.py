"""No host-device synchronization from the hooks between logging and
checkpoint iterations: Tensor.item / .cpu / .tolist / float() / bool() are
counted by patching, per iteration, inside the hooks of a real run."""
import collections

import pytest
import torch
from mmengine.config import Config
from mmengine.runner import Runner

import bootmae_mm  # noqa: F401
from bootmae_mm.datasets.demo_pictures import make_demo_dataset
from helpers.demo_pretrain import write_tiny_demo_config

READS = ('item', 'cpu', 'tolist', '__float__', '__int__', '__bool__')


def _count_reads_in_hooks(runner, monkeypatch):
    """Per (1-based) iteration, the number of tensor reads made while the
    train-iteration hooks run."""
    counts = collections.Counter()
    current = [None]
    for name in READS:
        real = getattr(torch.Tensor, name)

        def counted(self, *args, _real=real, **kwargs):
            if current[0] is not None:
                counts[current[0]] += 1
            return _real(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)
    call_hook = runner.call_hook

    def call_hook_counted(fn_name, **kwargs):
        if fn_name not in ('before_train_iter', 'after_train_iter'):
            return call_hook(fn_name, **kwargs)
        current[0] = runner.iter + 1
        try:
            return call_hook(fn_name, **kwargs)
        finally:
            current[0] = None

    monkeypatch.setattr(runner, 'call_hook', call_hook_counted)
    return counts


@pytest.mark.parametrize('loop', ['EpochBasedTrainLoop',
                                  'PrefetchEpochBasedTrainLoop'])
def test_hooks_read_only_at_logging_and_checkpoint_iterations(
        tmp_path, monkeypatch, loop):
    """The tiny BootMAE pretraining run with the default runtime's hooks
    (LogIntervalRuntimeInfoHook, IterTimerHook, LoggerHook every 3
    iterations, checkpoints every 4, ExactResumeHook, NonFiniteLossHook,
    MomentumTargetHook, FeatureWeightRampHook): 9 iterations; only the
    logging (3, 6, 9) and checkpoint (4, 8) iterations read a value back,
    and the logged losses are those of the model's outputs."""
    make_demo_dataset(str(tmp_path / 'demo'), num_train=2, num_val=1,
                      img_size=32)
    cfg = Config.fromfile(write_tiny_demo_config(
        tmp_path / 'tiny.py', tmp_path / 'demo', num_workers=0,
        persistent=False, max_epochs=3, ckpt_interval=4))
    cfg.work_dir = str(tmp_path / 'work')
    cfg.default_hooks.logger.interval = 3
    cfg.train_cfg.type = loop
    runner = Runner.from_cfg(cfg)
    counts = _count_reads_in_hooks(runner, monkeypatch)
    losses = []
    real_train_step = type(runner.model).train_step

    def train_step(model, *args, **kwargs):
        out = real_train_step(model, *args, **kwargs)
        losses.append(out['loss'].detach().clone())
        return out

    monkeypatch.setattr(type(runner.model), 'train_step', train_step)
    runner.train()
    assert runner.iter == 9
    quiet = [i for i in range(1, 10) if counts[i] == 0]
    assert quiet == [1, 2, 5, 7], dict(counts)
    logged = runner.message_hub.get_scalar('train/loss').data[0]
    assert list(logged) == [float(v) for v in losses]


def test_nan_between_logging_iterations_stops_before_the_checkpoint(
        tmp_path):
    """Logging every 5 iterations, checkpoints every 2, NaN loss at 3: the
    flag is read before the checkpoint of iteration 4 is written, the
    error names iteration 3 and the checkpoint of 2 stays the last one."""
    import glob
    import os.path as osp

    from mmengine.hooks import LoggerHook

    from helpers.toy_runner import build_toy_runner
    runner = build_toy_runner(tmp_path, max_iters=8, interval=2, nan_at=3)
    next(h for h in runner.hooks if isinstance(h, LoggerHook)).interval = 5
    with pytest.raises(RuntimeError) as info:
        runner.train()
    msg = str(info.value)
    assert 'Non-finite loss at iteration 3 (epoch 1)' in msg
    assert 'detected at iteration 4' in msg and 'loss_mse=nan' in msg
    assert 'iter_2.pth' in msg
    assert sorted(osp.basename(p) for p in glob.glob(
        osp.join(str(tmp_path), 'iter_*.pth'))) == ['iter_2.pth']


def test_checkpoint_holds_every_logged_value_between_log_reads(tmp_path):
    """Logging every 5 iterations, checkpoints every 2: the message hub
    saved in iter_4.pth holds the losses of iterations 1-4 (read before the
    save), the same values the run ends with, and the run's history equals
    the model's outputs."""
    from mmengine.hooks import LoggerHook

    from bootmae_mm.interop.checkpoint_files import safe_torch_load
    from helpers.toy_runner import build_toy_runner
    runner = build_toy_runner(tmp_path, max_iters=6, interval=2)
    next(h for h in runner.hooks if isinstance(h, LoggerHook)).interval = 5
    outputs = []
    real_train_step = type(runner.model).train_step

    def train_step(model, *args, **kwargs):
        out = real_train_step(model, *args, **kwargs)
        outputs.append(float(out['loss']))
        return out

    type(runner.model).train_step = train_step
    try:
        runner.train()
    finally:
        type(runner.model).train_step = real_train_step
    final = list(runner.message_hub.get_scalar('train/loss').data[0])
    assert final == outputs and len(final) == 6
    saved = safe_torch_load(str(tmp_path / 'iter_4.pth'))['message_hub']
    history = saved['log_scalars']['train/loss'].data[0]
    assert list(history) == final[:4]
