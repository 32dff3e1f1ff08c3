"""Data-loader workers that die with the process that started them."""
import ctypes
import os
import signal
import sys

from mmengine.hooks import Hook
from mmengine.runner import BaseLoop
from mmpretrain.registry import HOOKS

_PR_SET_PDEATHSIG = 1  # linux/prctl.h


class DieWithParent:
    """A data-loader ``worker_init_fn`` that asks the kernel to SIGKILL the
    worker when the process that started it dies (Linux
    ``prctl(PR_SET_PDEATHSIG)``), then calls the loader's own
    ``worker_init_fn`` (mmengine's seeding) unchanged.

    A worker whose parent is SIGKILLed would otherwise be re-parented and
    stay forever, blocked writing to a queue nobody reads. On systems
    without ``prctl`` only the wrapped function runs.

    Args:
        worker_init_fn (callable, optional): the function to call after,
            with the worker id.
    """

    def __init__(self, worker_init_fn=None) -> None:
        self.worker_init_fn = worker_init_fn
        self.parent_pid = os.getpid()

    def __call__(self, worker_id: int) -> None:
        if sys.platform.startswith('linux'):
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0,
                          0) != 0:
                raise OSError(ctypes.get_errno(),
                              'prctl(PR_SET_PDEATHSIG) failed in a '
                              'data-loader worker')
            if os.getppid() != self.parent_pid:  # it died before prctl
                os.kill(os.getpid(), signal.SIGKILL)
        if self.worker_init_fn is not None:
            self.worker_init_fn(worker_id)


@HOOKS.register_module()
class WorkerParentDeathHook(Hook):
    """Makes the workers of every data loader the runner built (train, val,
    test) die with the training process, SIGKILL included, by wrapping each
    loader's ``worker_init_fn`` in :class:`DieWithParent` (the original,
    e.g. mmengine's per-worker seeding, still runs).

    ``before_run`` comes after :meth:`Runner.train` / ``val`` / ``test``
    have built their loops' data loaders and before any worker starts.
    """

    priority = 'VERY_HIGH'

    def before_run(self, runner) -> None:
        for name in ('_train_loop', '_val_loop', '_test_loop'):
            loop = getattr(runner, name, None)
            loader = getattr(loop, 'dataloader', None)
            if not isinstance(loop, BaseLoop) or loader is None or \
                    isinstance(loader.worker_init_fn, DieWithParent):
                continue
            loader.worker_init_fn = DieWithParent(loader.worker_init_fn)
