"""Stop training at the first NaN/Inf loss, before any poisoned checkpoint."""
from typing import Optional

import torch
from mmengine.dist import all_reduce, get_world_size
from mmengine.hooks import CheckpointHook, Hook
from mmpretrain.registry import HOOKS

from ..checkpoint_pointer import find_resume_checkpoint
from .log_interval_runtime_info_hook import logger_interval


@HOOKS.register_module()
class NonFiniteLossHook(Hook):
    """Raise a clear error when a loss term has been NaN or Inf, before any
    checkpoint is written after it.

    After every iteration the loss terms of the model's log variables
    (``loss`` and each key containing ``'loss'``, as mmengine's
    ``parse_losses`` defines them) are checked **on their device**: the
    first iteration with a non-finite term, its epoch and its terms' values
    are kept in small device tensors, with no read-back to the host. The
    flag is read (and, in distributed training, max-reduced over ranks, so
    every rank stops together) only every ``interval`` iterations (by
    default where ``LoggerHook`` logs, which reads the step's values
    anyway), at the iterations where ``CheckpointHook`` will save (its
    interval, the end of an epoch, the last iteration; this hook runs
    before it) and at the end of training; ``before_save_checkpoint``
    (rank 0 only in mmengine, before the file is written) checks this
    rank's flag once more. If it is set, a ``RuntimeError`` names the first
    bad iteration (1-based, as logged), its epoch, every term's value
    there, the iteration at which it was detected, and where the last good
    checkpoint is. No checkpoint is ever written after a non-finite loss;
    the iterations between the bad one and its detection (fewer than
    ``interval``) are lost work only.

    As a second line of defence, ``before_save_checkpoint`` refuses to save a
    model whose parameters are not all finite (a finite loss can still give
    an Inf gradient without AMP). That costs one device sync per checkpoint.

    With ``AmpOptimWrapper`` and a dynamic loss scale, an overflowing step is
    skipped by the grad scaler while the (unscaled) loss stays finite, so the
    hook does not fire on it.

    Args:
        check_params_before_save (bool): Also check that all parameters are
            finite before each checkpoint is saved. Defaults to True.
        interval (int, optional): Read the flag every ``interval``
            iterations. Defaults to None: the ``LoggerHook``'s interval.
    """

    priority = 'HIGH'

    def __init__(self, check_params_before_save: bool = True,
                 interval: Optional[int] = None) -> None:
        if interval is not None and interval < 1:
            raise ValueError(f'NonFiniteLossHook: `interval` must be >= 1, '
                             f'got {interval}')
        self.check_params_before_save = check_params_before_save
        self.interval = interval
        self._reset()

    def _reset(self) -> None:
        self._keys = None  # the loss terms' names
        self._first = None  # device: (iteration, epoch) of the first bad
        self._values = None  # device: its terms' values

    def before_train(self, runner) -> None:
        self._interval = self.interval or logger_interval(runner)
        self._reset()

    def after_train_iter(self, runner, batch_idx: int,
                         data_batch=None, outputs: Optional[dict] = None):
        if outputs:
            self._record(runner, outputs)
        if (self.every_n_train_iters(runner, self._interval)
                or self._checkpoint_due(runner, batch_idx)):
            self._check(runner)

    def _checkpoint_due(self, runner, batch_idx: int) -> bool:
        """Whether a ``CheckpointHook`` may save after this iteration (or
        at the end of its epoch): a superset, each costs one read."""
        if (self.end_of_epoch(runner.train_dataloader, batch_idx)
                or self.is_last_train_iter(runner)):
            return True
        return any(
            isinstance(hook, CheckpointHook) and not hook.by_epoch
            and hook.interval > 0
            and self.every_n_train_iters(runner, hook.interval)
            for hook in runner.hooks)

    def after_train(self, runner) -> None:
        self._check(runner)

    def _record(self, runner, outputs: dict) -> None:
        """Note on the device whether this iteration's terms are finite."""
        terms = {k: v for k, v in outputs.items() if 'loss' in k}
        if not terms:
            return
        if self._keys is not None and list(terms) != self._keys:
            self._check(runner)  # other terms from now on: settle the old
            self._reset()
        device = next((v.device for v in terms.values()
                       if isinstance(v, torch.Tensor)), torch.device('cpu'))
        values = torch.stack([
            torch.as_tensor(v, device=device).detach().double().mean()
            for v in terms.values()
        ])
        if self._keys is None:
            self._keys = list(terms)
            self._first = torch.full((2, ), -1, dtype=torch.int64,
                                     device=device)
            self._values = torch.zeros_like(values)
        # fills and selects on the device: nothing is read back here
        take = (~torch.isfinite(values).all()) & (self._first[0] < 0)
        where = torch.stack([
            torch.full((), runner.iter, dtype=torch.int64, device=device),
            torch.full((), runner.epoch, dtype=torch.int64, device=device)
        ])
        self._first = torch.where(take, where, self._first)
        self._values = torch.where(take, values, self._values)

    def _check(self, runner, all_ranks: bool = True) -> None:
        """Read the flag (one sync; max-reduced over ranks with
        ``all_ranks``, a collective every rank must call); raise if a term
        was not finite."""
        if self._first is None:
            return
        flag = (self._first[:1] >= 0).to(torch.float32)
        if all_ranks and get_world_size() > 1:
            all_reduce(flag, op='max')
        if not flag.item():
            return
        first_iter, first_epoch = self._first.tolist()
        if first_iter < 0:
            raise RuntimeError(
                f'Non-finite loss on another rank, detected at iteration '
                f'{runner.iter + 1}: training is stopped and no checkpoint '
                f'is saved; {self._last_good(runner)}')
        values = ', '.join(
            f'{k}={v}' for k, v in zip(self._keys, self._values.tolist()))
        raise RuntimeError(
            f'Non-finite loss at iteration {first_iter + 1} (epoch '
            f'{first_epoch + 1}): {values} (on this rank; detected at '
            f'iteration {runner.iter + 1}). Training is stopped and no '
            'checkpoint of it or of a later iteration is saved; '
            f'{self._last_good(runner)}')

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        # mmengine calls this on rank 0 only: no collective here (the ranks
        # were checked together in after_train_iter)
        self._check(runner, all_ranks=False)
        if not self.check_params_before_save:
            return
        params = [p.detach() for p in runner.model.parameters()
                  if p.is_floating_point()]
        if not params or torch.stack(
                [torch.isfinite(p).all() for p in params]).all():
            return
        bad = [n for n, p in runner.model.named_parameters()
               if p.is_floating_point() and not torch.isfinite(p).all()]
        raise RuntimeError(
            f'Refusing to save a checkpoint at iteration {runner.iter + 1} '
            f'(epoch {runner.epoch + 1}): parameters {bad[:5]}'
            f'{" ..." if len(bad) > 5 else ""} hold NaN/Inf values. '
            f'{self._last_good(runner)}')

    @staticmethod
    def _last_good(runner) -> str:
        last = find_resume_checkpoint(runner.work_dir)
        if last:
            return (f'the last good checkpoint is kept at {last} (resume '
                    'with --resume auto after fixing the cause, e.g. a '
                    'lower lr or fp16 loss scaling).')
        return f'no checkpoint has been saved yet in {runner.work_dir}.'
