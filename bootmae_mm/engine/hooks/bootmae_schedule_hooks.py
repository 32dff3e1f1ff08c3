"""BootMAE's two schedules in epochs (docs/method.md sections 5, 6), as
hooks: the momentum target's EMA decay, applied after every optimizer step
(``MomentumTargetHook``), and the feature-loss weight ramp, set before
every iteration (``FeatureWeightRampHook``)."""
from typing import Optional

from mmengine.hooks import Hook
from mmengine.runner import EpochBasedTrainLoop
from mmpretrain.registry import HOOKS
from mmpretrain.utils import get_ori_model
from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

from ...config_errors import ConfigValueError


def current_epoch(runner, iters_per_epoch=None) -> int:
    """The current (0-based) epoch of an epoch-based loop (an
    ``EpochBasedTrainLoop`` or a subclass), or ``iter // iters_per_epoch``
    for any other loop when ``iters_per_epoch`` is given."""
    if iters_per_epoch:
        return runner.iter // iters_per_epoch
    if not isinstance(runner.train_loop, EpochBasedTrainLoop):
        raise ValueError(
            f'{type(runner.train_loop).__name__} is not epoch-based: set '
            'the hook\'s `iters_per_epoch` to follow a schedule in epochs.')
    return runner.epoch


def total_epochs(runner, iters_per_epoch=None) -> float:
    """The schedule length in epochs."""
    if iters_per_epoch:
        return runner.max_iters / iters_per_epoch
    current_epoch(runner)  # raises for other loops
    return runner.max_epochs


def momentum_decay(epoch: float, start: float = 0.999, base: float = 0.9999,
                   ramp_epochs: int = 100, dynamic: bool = False,
                   final: float = 0.99999,
                   dynamic_epochs: int = 300) -> float:
    """BootMAE's EMA decay at ``epoch`` (docs/method.md section 6).

    ``start -> base`` linearly over ``ramp_epochs``; then ``base``, or with
    ``dynamic`` a second linear ramp ``base -> final`` over
    ``dynamic_epochs``.
    """
    if epoch < ramp_epochs:
        return start + epoch / ramp_epochs * (base - start)
    if not dynamic:
        return base
    progress = min(dynamic_epochs, epoch - ramp_epochs) / dynamic_epochs
    return base + progress * (final - base)


@HOOKS.register_module()
class MomentumTargetHook(Hook):
    """Updates BootMAE's momentum target after every optimizer step:
    ``target = d * target + (1 - d) * online`` with ``d`` from
    :func:`momentum_decay` (steps that only accumulate gradients do not move
    the target). The target's weights live in the model, so they are saved
    in and restored from checkpoints; the decay is derived from the epoch,
    so a resumed run continues the schedule exactly. The current decay is
    logged as ``momentum``. Under FSDP the sharded online weights are
    gathered for the update (``summon_full_params``); the target, made of
    buffers, is a full copy on every rank.

    Args:
        start (float): decay at epoch 0. Defaults to 0.999.
        base (float): decay at the end of the first ramp. Defaults to 0.9999.
        ramp_epochs (int): length of the first ramp. Defaults to 100.
        dynamic (bool): ramp on to ``final`` afterwards (ViT-B recipe).
            Defaults to False.
        final (float): decay at the end of the dynamic ramp.
            Defaults to 0.99999.
        dynamic_epochs (int): length of the dynamic ramp. Defaults to 300.
        iters_per_epoch (int, optional): for iteration-based loops, how many
            iterations make one epoch of the schedule.
    """
    priority = 'ABOVE_NORMAL'

    def __init__(self, start: float = 0.999, base: float = 0.9999,
                 ramp_epochs: int = 100, dynamic: bool = False,
                 final: float = 0.99999, dynamic_epochs: int = 300,
                 iters_per_epoch: Optional[int] = None):
        for key, value in dict(start=start, base=base, final=final).items():
            if not 0 < value < 1:
                raise ConfigValueError(
                    key, value, f'MomentumTargetHook.{key}={value}: an EMA '
                    'decay must lie in (0, 1).')
        if ramp_epochs <= 0 or dynamic_epochs <= 0:
            raise ValueError('MomentumTargetHook: ramp_epochs and '
                             'dynamic_epochs must be positive.')
        self.schedule = dict(start=start, base=base, ramp_epochs=ramp_epochs,
                             dynamic=dynamic, final=final,
                             dynamic_epochs=dynamic_epochs)
        self.iters_per_epoch = iters_per_epoch

    def before_train(self, runner) -> None:
        model = get_ori_model(runner.model)
        if not getattr(model, 'with_target', False):
            raise TypeError(f'MomentumTargetHook needs a model with a '
                            f'momentum target, got {type(model).__name__}.')
        current_epoch(runner, self.iters_per_epoch)  # fail early if unusable

    def after_train_iter(self, runner, batch_idx: int, data_batch=None,
                         outputs=None) -> None:
        if not runner.optim_wrapper.should_update():
            return  # gradient accumulation: no optimizer step this iteration
        decay = momentum_decay(current_epoch(runner, self.iters_per_epoch),
                               **self.schedule)
        model = runner.model
        if isinstance(model, FSDP):
            # sharded online weights: gather them for the update (the
            # target is a full copy on every rank); nothing is written back
            with FSDP.summon_full_params(model, writeback=False):
                get_ori_model(runner.model).update_target(decay)
        else:
            get_ori_model(runner.model).update_target(decay)
        runner.message_hub.update_scalar('train/momentum', decay)


def feature_weight_ramp(epoch: float, max_epochs: float,
                        ramp_fraction: float = 0.25) -> float:
    """``min(1, (epoch + 1) / (ramp_fraction * max_epochs))``: with the
    default, the spec's ``min(1, 4 * (e + 1) / E)`` (docs/method.md
    section 5)."""
    return min(1.0, (epoch + 1) / (ramp_fraction * max_epochs))


@HOOKS.register_module()
class FeatureWeightRampHook(Hook):
    """Ramps the weight of BootMAE's feature loss linearly over the first
    ``ramp_fraction`` of training: before each iteration it sets the
    model's ``feature_ramp``, so the feature loss is weighted by
    ``model.feature_weight * ramp``.

    Args:
        ramp_fraction (float): fraction of the schedule the ramp takes.
            Defaults to 0.25.
        iters_per_epoch (int, optional): for iteration-based loops, how many
            iterations make one epoch of the schedule.
    """
    priority = 'ABOVE_NORMAL'

    def __init__(self, ramp_fraction: float = 0.25,
                 iters_per_epoch: Optional[int] = None):
        if not 0 < ramp_fraction <= 1:
            raise ConfigValueError(
                'ramp_fraction', ramp_fraction,
                f'FeatureWeightRampHook.ramp_fraction={ramp_fraction} must '
                'lie in (0, 1].')
        self.ramp_fraction = ramp_fraction
        self.iters_per_epoch = iters_per_epoch

    def before_train_iter(self, runner, batch_idx: int,
                          data_batch=None) -> None:
        model = get_ori_model(runner.model)
        model.feature_ramp = feature_weight_ramp(
            current_epoch(runner, self.iters_per_epoch),
            total_epochs(runner, self.iters_per_epoch), self.ramp_fraction)
