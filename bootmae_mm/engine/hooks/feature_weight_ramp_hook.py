from typing import Optional

from mmengine.hooks import Hook
from mmpretrain.registry import HOOKS

from ...config_errors import ConfigValueError
from ..model_unwrap import unwrap_model
from .schedule_utils import current_epoch, total_epochs


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
        model = unwrap_model(runner.model)
        model.feature_ramp = feature_weight_ramp(
            current_epoch(runner, self.iters_per_epoch),
            total_epochs(runner, self.iters_per_epoch), self.ramp_fraction)
