"""No host-device synchronization from the hooks and the train loop between
logging and checkpoint iterations of a real run, however a value would be
read back (any route to a Python scalar, ``tolist``, ``numpy``, ``cpu``),
and no logged value lost by reading late."""
import collections

import pytest
import torch
from mmengine.config import Config
from mmengine.runner import Runner
from torch.utils._python_dispatch import TorchDispatchMode

import bootmae_mm  # noqa: F401
from bootmae_mm.datasets.demo_pictures import make_demo_dataset
from helpers.demo_pretrain import write_tiny_demo_config

# reads that bypass the dispatcher; every other read of a tensor's value
# (item, float, int, bool, an `if tensor`, a format) is one
# ``aten._local_scalar_dense`` call
HOST_COPIES = ('tolist', 'numpy', 'cpu', '__array__')


class _ReadCounter(TorchDispatchMode):
    """Counts, per 1-based iteration and per phase (``'step'``: the model's
    train step, ``'loop'``: the rest of the iteration, i.e. the hooks and
    the loop around the step), every read of a tensor's value while
    ``where`` is set."""

    def __init__(self):
        super().__init__()
        self.where = None
        self.counts = collections.Counter()

    def note(self):
        if self.where is not None:
            self.counts[self.where] += 1

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten._local_scalar_dense.default:
            self.note()
        return func(*args, **(kwargs or {}))


def _count_reads(runner, monkeypatch):
    """Install a :class:`_ReadCounter` around every training iteration
    (model step, hooks and loop; the next batch is loaded outside it)."""
    counter = _ReadCounter()
    for name in HOST_COPIES:
        real = getattr(torch.Tensor, name)

        def counted(self, *args, _real=real, **kwargs):
            counter.note()
            return _real(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)
    loop_cls = type(runner.train_loop)
    real_run_iter = loop_cls.run_iter
    model_cls = type(runner.model)
    real_train_step = model_cls.train_step

    def run_iter(loop, *args, **kwargs):
        counter.where = (runner.iter + 1, 'loop')
        try:
            with counter:
                return real_run_iter(loop, *args, **kwargs)
        finally:
            counter.where = None

    def train_step(model, *args, **kwargs):
        it = counter.where[0]
        counter.where = (it, 'step')
        try:
            return real_train_step(model, *args, **kwargs)
        finally:
            counter.where = (it, 'loop')

    monkeypatch.setattr(loop_cls, 'run_iter', run_iter)
    monkeypatch.setattr(model_cls, 'train_step', train_step)
    return counter.counts


@pytest.mark.parametrize('loop', ['EpochBasedTrainLoop',
                                  'PrefetchEpochBasedTrainLoop'])
def test_no_host_sync_between_logging_and_checkpoint_iterations(
        tmp_path, monkeypatch, loop):
    """The tiny BootMAE pretraining run with the default runtime's hooks,
    logging every 3 iterations and a checkpoint every 4, 9 iterations: in
    an iteration that neither logs nor saves, neither the hooks nor the
    loop read a value back, and the logged losses are those of the model's
    outputs. The model step's own reads are counted but not judged: on a
    CPU machine its inputs (the masks) live on the host, where reading them
    syncs nothing."""
    make_demo_dataset(str(tmp_path / 'demo'), num_train=2, num_val=1,
                      img_size=32)
    log_every, ckpt_every = 3, 4
    cfg = Config.fromfile(write_tiny_demo_config(
        tmp_path / 'tiny.py', tmp_path / 'demo', num_workers=0,
        persistent=False, max_epochs=3, ckpt_interval=ckpt_every))
    cfg.work_dir = str(tmp_path / 'work')
    cfg.default_hooks.logger.interval = log_every
    cfg.train_cfg.type = loop
    runner = Runner.from_cfg(cfg)
    losses = []
    real_train_step = type(runner.model).train_step

    def train_step(model, *args, **kwargs):
        out = real_train_step(model, *args, **kwargs)
        losses.append(out['loss'].detach().clone())
        return out

    monkeypatch.setattr(type(runner.model), 'train_step', train_step)
    counts = _count_reads(runner, monkeypatch)
    runner.train()
    assert runner.iter == 9
    reading = {i for i in range(1, 10)
               if i % log_every == 0 or i % ckpt_every == 0}
    quiet = set(range(1, 10)) - reading
    assert quiet == {1, 2, 5, 7}
    syncs = {where: n for where, n in counts.items()
             if where[0] in quiet and where[1] == 'loop'}
    assert syncs == {}, dict(counts)
    # the counter does see reads: printing a loss needs one
    assert all(counts[(i, 'loop')] > 0 for i in range(log_every, 10,
                                                     log_every))
    logged = runner.message_hub.get_scalar('train/loss').data[0]
    assert list(logged) == [float(v) for v in losses]


def test_checkpoint_holds_every_logged_value_between_log_reads(tmp_path):
    """Logging every 5 iterations, checkpoints every 2: the message hub
    saved in iter_4.pth holds the losses of iterations 1-4 (read before the
    save), the same values the run ends with, and the run's history equals
    the model's outputs."""
    from mmengine.hooks import LoggerHook
    from mmengine.runner import CheckpointLoader

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
    # read as a resume reads it (bootmae_mm's safe loader)
    saved = CheckpointLoader.load_checkpoint(
        str(tmp_path / 'iter_4.pth'), map_location='cpu')['message_hub']
    history = saved['log_scalars']['train/loss'].data[0]
    assert list(history) == final[:4]
