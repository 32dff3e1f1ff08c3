"""mmengine's RuntimeInfoHook, reading the logged values at the logging
interval instead of after every step."""
from typing import Optional

import torch
from mmengine.hooks import LoggerHook, RuntimeInfoHook
from mmengine.utils import apply_to
from mmpretrain.registry import HOOKS


def logger_interval(runner, default: int = 1) -> int:
    """The ``interval`` of the runner's ``LoggerHook`` (``default`` when it
    has none)."""
    for hook in runner.hooks:
        if isinstance(hook, LoggerHook):
            return hook.interval
    return default


@HOOKS.register_module()
class LogIntervalRuntimeInfoHook(RuntimeInfoHook):
    """``RuntimeInfoHook`` whose step outputs (losses and other logged
    values, device tensors) reach the message hub only when they are read.

    mmengine's hook puts every logged value of every iteration into the
    message hub with ``.item()``: one host-device synchronization per step,
    after which the GPU idles until the host has queued the next step. This
    hook keeps the (detached) values of the iterations since the last read
    and reads them all with one copy at the iterations where ``LoggerHook``
    logs (every ``interval`` iterations and at the end of an epoch), before
    a checkpoint is written (whose message hub it refreshes, so a resumed
    run has the same history) and at the end of training. The message hub
    then holds the same values, iteration by iteration, as with mmengine's
    hook, so logs, smoothed values and ``scalars.json`` are unchanged; only
    hooks that read ``train/<loss>`` from the message hub between two
    logging iterations see it late (none of bootmae-mm's do).

    Use it in place of the default: ``default_hooks.runtime_info =
    dict(type='LogIntervalRuntimeInfoHook')``.

    Args:
        interval (int, optional): Read every ``interval`` iterations.
            Defaults to None: the ``LoggerHook``'s interval.
    """

    priority = 'VERY_HIGH'

    def __init__(self, interval: Optional[int] = None) -> None:
        if interval is not None and interval < 1:
            raise ValueError(f'LogIntervalRuntimeInfoHook: `interval` must '
                             f'be >= 1, got {interval}')
        self.interval = interval
        self._pending = []

    def before_train(self, runner) -> None:
        super().before_train(runner)
        self._interval = self.interval or logger_interval(runner)
        self._pending = []

    def after_train_iter(self, runner, batch_idx: int, data_batch=None,
                         outputs: Optional[dict] = None) -> None:
        if outputs is not None:
            self._pending.append({
                key: value.detach() if isinstance(value, torch.Tensor)
                else value
                for key, value in outputs.items()
            })
        if (self.every_n_inner_iters(batch_idx, self._interval)
                or self.every_n_train_iters(runner, self._interval)
                or self.end_of_epoch(runner.train_dataloader, batch_idx)
                or self.is_last_train_iter(runner)):
            self.flush(runner)

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        if self._pending:
            self.flush(runner)
            checkpoint['message_hub'] = apply_to(
                runner.message_hub.state_dict(),
                lambda x: hasattr(x, 'cpu'), lambda x: x.cpu())

    def after_train(self, runner) -> None:
        self.flush(runner)

    def flush(self, runner) -> None:
        """Put the pending values into the message hub (one read)."""
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        tensors = [v for step in pending for v in step.values()
                   if isinstance(v, torch.Tensor)]
        if tensors and len({t.device for t in tensors}) == 1:
            # float64 holds every float32 / bf16 / fp16 value exactly
            host = iter(torch.stack([t.double().mean() for t in tensors])
                        .cpu().tolist())
        else:
            host = iter([t.double().mean().item() for t in tensors])
        for step in pending:
            for key, value in step.items():
                if isinstance(value, torch.Tensor):
                    value = next(host)
                runner.message_hub.update_scalar(f'train/{key}', value)
