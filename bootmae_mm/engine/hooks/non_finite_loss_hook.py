"""Stop training at the first NaN/Inf loss, before any poisoned checkpoint."""
import math
import os.path as osp
from typing import Dict, Optional

import torch
from mmengine.dist import all_reduce, get_world_size
from mmengine.hooks import Hook
from mmpretrain.registry import HOOKS

from ..atomic_backend import read_last_checkpoint


@HOOKS.register_module()
class NonFiniteLossHook(Hook):
    """Raise a clear error as soon as a loss term is NaN or Inf.

    In ``after_train_iter`` every loss term of the model's log variables
    (``loss`` and each key containing ``'loss'``, as mmengine's
    ``parse_losses`` defines them) is checked. If one is not finite, a
    ``RuntimeError`` names the iteration (1-based, as logged), the epoch and
    every term's value, and where the last good checkpoint is. The hook's
    ``HIGH`` priority makes it run after ``RuntimeInfoHook`` (``VERY_HIGH``,
    which has already copied the values to the host, so reading them here
    costs no extra device sync) and before ``CheckpointHook`` (``VERY_LOW``):
    the exception ends the loop, so no checkpoint of that iteration, or of
    its epoch, is ever written.

    As a second line of defence, ``before_save_checkpoint`` refuses to save a
    model whose parameters are not all finite (a finite loss can still give
    an Inf gradient without AMP). That costs one device sync per checkpoint.

    With ``AmpOptimWrapper`` and a dynamic loss scale, an overflowing step is
    skipped by the grad scaler while the (unscaled) loss stays finite, so the
    hook does not fire on it.

    In distributed training the "non-finite" flag is max-reduced over ranks
    (one tiny collective per iteration), so every rank stops together.

    Args:
        check_params_before_save (bool): Also check that all parameters are
            finite before each checkpoint is saved. Defaults to True.
    """

    priority = 'HIGH'

    def __init__(self, check_params_before_save: bool = True) -> None:
        self.check_params_before_save = check_params_before_save

    def after_train_iter(self, runner, batch_idx: int,
                         data_batch=None, outputs: Optional[dict] = None):
        if not outputs:
            return
        terms = self._loss_terms(runner, outputs)
        bad = any(not math.isfinite(v) for v in terms.values())
        if get_world_size() > 1:
            flag = torch.tensor(float(bad))
            all_reduce(flag, op='max')
            bad = bool(flag.item())
        if bad:
            values = ', '.join(f'{k}={v}' for k, v in terms.items())
            raise RuntimeError(
                f'Non-finite loss at iteration {runner.iter + 1} (epoch '
                f'{runner.epoch + 1}): {values} (on this rank). Training is '
                'stopped and no checkpoint of this iteration is saved; '
                f'{self._last_good(runner)}')

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
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
    def _loss_terms(runner, outputs: dict) -> Dict[str, float]:
        """The loss terms as floats, taken from the message hub where
        ``RuntimeInfoHook`` has already put them."""
        terms = {}
        for key, value in outputs.items():
            if 'loss' not in key:
                continue
            scalar = runner.message_hub.log_scalars.get(f'train/{key}')
            terms[key] = float(scalar.current()) if scalar is not None \
                else float(value)
        return terms

    @staticmethod
    def _last_good(runner) -> str:
        last = read_last_checkpoint(runner.work_dir)
        if last and osp.isfile(last):
            return (f'the last good checkpoint is kept at {last} (resume '
                    'with --resume auto after fixing the cause, e.g. a '
                    'lower lr or fp16 loss scaling).')
        return f'no checkpoint has been saved yet in {runner.work_dir}.'
