"""Step outputs read back to the host only where the step's values are read
anyway: one mechanism (:class:`DeferredReadsHook`) and its two hooks, the
logged values (:class:`LogIntervalRuntimeInfoHook`) and the stop at the
first non-finite loss (:class:`NonFiniteLossHook`).

Reading a device tensor (``.item()``) waits for the step that computes it;
after such a read the GPU idles until the host has queued the next step.
"""
from typing import List, Optional

import torch
from mmengine.dist import all_reduce, get_world_size
from mmengine.hooks import CheckpointHook, Hook, LoggerHook, RuntimeInfoHook
from mmengine.utils import apply_to
from mmpretrain.registry import HOOKS

from ..checkpoint_pointer import find_resume_checkpoint


def logger_interval(runner, default: int = 1) -> int:
    """The ``interval`` of the runner's ``LoggerHook`` (``default`` when it
    has none)."""
    for hook in runner.hooks:
        if isinstance(hook, LoggerHook):
            return hook.interval
    return default


class DeferredReadsHook(Hook):
    """Keeps each iteration's step outputs (detached, on their device) and
    hands them to :meth:`read` only at the read iterations: every
    ``interval`` iterations (by default where ``LoggerHook`` logs, which
    reads the step's values anyway), at the end of an epoch, at the
    iterations where ``CheckpointHook`` saves by iteration (these hooks run
    before it) and at the end of training.

    A subclass says which outputs to keep (:meth:`keep`) and what to do
    with them (:meth:`read`, which gets ``(iteration, epoch, outputs)`` per
    kept iteration, 0-based).

    Args:
        interval (int, optional): read every ``interval`` iterations.
            Defaults to None: the ``LoggerHook``'s interval.
    """

    def __init__(self, interval: Optional[int] = None) -> None:
        if interval is not None and interval < 1:
            raise ValueError(f'{type(self).__name__}: `interval` must be '
                             f'>= 1, got {interval}')
        self.interval = interval
        self._pending = []

    def keep(self, outputs: dict) -> dict:
        """The outputs to keep of one iteration (all of them)."""
        return outputs

    def read(self, runner, pending: List[tuple]) -> None:
        raise NotImplementedError

    def before_train(self, runner) -> None:
        super().before_train(runner)
        self._interval = self.interval or logger_interval(runner)
        self._pending = []
        # (interval, save_begin) of each CheckpointHook saving by iteration
        self._saves = [(hook.interval, hook.save_begin)
                       for hook in runner.hooks
                       if isinstance(hook, CheckpointHook)
                       and not hook.by_epoch and hook.interval > 0]

    def after_train_iter(self, runner, batch_idx: int, data_batch=None,
                         outputs: Optional[dict] = None) -> None:
        kept = self.keep(outputs) if outputs else None
        if kept:
            self._pending.append((runner.iter, runner.epoch, {
                key: value.detach() if isinstance(value, torch.Tensor)
                else value for key, value in kept.items()}))
        if self._read_due(runner, batch_idx):
            self.flush(runner)

    def _read_due(self, runner, batch_idx: int) -> bool:
        if (self.every_n_inner_iters(batch_idx, self._interval)
                or self.every_n_train_iters(runner, self._interval)
                or self.end_of_epoch(runner.train_dataloader, batch_idx)
                or self.is_last_train_iter(runner)):
            return True
        return any(self.every_n_train_iters(runner, interval, save_begin)
                   for interval, save_begin in self._saves)

    def after_train(self, runner) -> None:
        self.flush(runner)
        super().after_train(runner)

    def flush(self, runner) -> None:
        """Read the pending outputs (if any) and forget them."""
        if self._pending:
            pending, self._pending = self._pending, []
            self.read(runner, pending)


@HOOKS.register_module()
class LogIntervalRuntimeInfoHook(DeferredReadsHook, RuntimeInfoHook):
    """``RuntimeInfoHook`` whose step outputs (losses and other logged
    values) reach the message hub at the read iterations of
    :class:`DeferredReadsHook`, all with one copy, instead of with one
    ``.item()`` after every step; also before a checkpoint is written
    (whose message hub it refreshes, so a resumed run has the same
    history). The message hub then holds the same values, iteration by
    iteration, as with mmengine's hook, so logs, smoothed values and
    ``scalars.json`` are unchanged; only hooks that read ``train/<loss>``
    from the message hub between two read iterations see it late (none of
    bootmae-mm's do).

    Use it in place of the default: ``default_hooks.runtime_info =
    dict(type='LogIntervalRuntimeInfoHook')``.

    Args:
        interval (int, optional): read every ``interval`` iterations.
            Defaults to None: the ``LoggerHook``'s interval.
    """

    priority = 'VERY_HIGH'

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        if self._pending:
            self.flush(runner)
            checkpoint['message_hub'] = apply_to(
                runner.message_hub.state_dict(),
                lambda x: hasattr(x, 'cpu'), lambda x: x.cpu())

    def read(self, runner, pending: List[tuple]) -> None:
        """Put the pending values into the message hub (one read)."""
        tensors = [v for _, _, step in pending for v in step.values()
                   if isinstance(v, torch.Tensor)]
        if tensors and len({t.device for t in tensors}) == 1:
            # float64 holds every float32 / bf16 / fp16 value exactly
            host = iter(torch.stack([t.double().mean() for t in tensors])
                        .cpu().tolist())
        else:
            host = iter([t.double().mean().item() for t in tensors])
        for _, _, step in pending:
            for key, value in step.items():
                if isinstance(value, torch.Tensor):
                    value = next(host)
                runner.message_hub.update_scalar(f'train/{key}', value)


@HOOKS.register_module()
class NonFiniteLossHook(DeferredReadsHook):
    """Raise a clear error when a loss term has been NaN or Inf, before any
    checkpoint is written after it.

    The loss terms of each iteration (``loss`` and each key containing
    ``'loss'``, as mmengine's ``parse_losses`` defines them) are kept on
    their device and checked at the read iterations of
    :class:`DeferredReadsHook` with one read of a flag (in distributed
    training max-reduced over ranks first, so that every rank stops
    together); ``before_save_checkpoint`` (rank 0 only in mmengine, before
    the file is written) checks this rank's terms once more. If one was not
    finite, a ``RuntimeError`` names the first bad iteration (1-based, as
    logged), its epoch, every term's value there, the iteration at which it
    was detected, and where the last good checkpoint is. No checkpoint is
    ever written after a non-finite loss; the iterations between the bad one
    and its detection (fewer than ``interval``) are lost work only.

    As a second line of defence, ``before_save_checkpoint`` refuses to save a
    model whose parameters are not all finite (a finite loss can still give
    an Inf gradient without AMP). That costs one device sync per checkpoint.

    With ``AmpOptimWrapper`` and a dynamic loss scale, an overflowing step is
    skipped by the grad scaler while the (unscaled) loss stays finite, so the
    hook does not fire on it.

    Args:
        check_params_before_save (bool): Also check that all parameters are
            finite before each checkpoint is saved. Defaults to True.
        interval (int, optional): check every ``interval`` iterations.
            Defaults to None: the ``LoggerHook``'s interval.
    """

    priority = 'HIGH'

    def __init__(self, check_params_before_save: bool = True,
                 interval: Optional[int] = None) -> None:
        super().__init__(interval)
        self.check_params_before_save = check_params_before_save

    def keep(self, outputs: dict) -> dict:
        return {k: v for k, v in outputs.items() if 'loss' in k}

    def read(self, runner, pending: List[tuple],
             all_ranks: bool = True) -> None:
        """Read whether a pending term was not finite (one sync; with
        ``all_ranks`` max-reduced over ranks, a collective every rank must
        call); raise if one was."""
        steps = [torch.stack([
            torch.as_tensor(v).to(self._device(terms)).detach().double()
            .mean() for v in terms.values()]) for _, _, terms in pending]
        bad = torch.stack([~torch.isfinite(s).all() for s in steps])
        flag = bad.any().to(torch.float32).reshape(1)
        if all_ranks and get_world_size() > 1:
            all_reduce(flag, op='max')
        if not flag.item():
            return
        if not bad.any().item():
            raise RuntimeError(
                f'Non-finite loss on another rank, detected at iteration '
                f'{runner.iter + 1}: training is stopped and no checkpoint '
                f'is saved; {self._last_good(runner)}')
        first = int(bad.nonzero()[0, 0])
        iteration, epoch, terms = pending[first]
        values = ', '.join(
            f'{k}={v}' for k, v in zip(terms, steps[first].tolist()))
        raise RuntimeError(
            f'Non-finite loss at iteration {iteration + 1} (epoch '
            f'{epoch + 1}): {values} (on this rank; detected at '
            f'iteration {runner.iter + 1}). Training is stopped and no '
            'checkpoint of it or of a later iteration is saved; '
            f'{self._last_good(runner)}')

    @staticmethod
    def _device(terms: dict) -> torch.device:
        return next((v.device for v in terms.values()
                     if isinstance(v, torch.Tensor)), torch.device('cpu'))

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        # mmengine calls this on rank 0 only: no collective here (the ranks
        # were checked together in after_train_iter), and the pending terms
        # stay for the next collective read
        if self._pending:
            self.read(runner, self._pending, all_ranks=False)
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
