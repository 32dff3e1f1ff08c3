"""BootMAE's feature branch (docs/method.md sections 5, 6) in one place:
the feature decoder and head, the momentum target whose features they
predict, and the weight of the feature loss."""
import torch
import torch.nn as nn
from mmpretrain.registry import MODELS

from ...config_errors import ConfigValueError
from .momentum_target import MomentumTargetMixin


def check_feature_weight(feature_weight: float) -> None:
    """Refuse a negative weight (the message starts ``feature_weight=``,
    so a config error names its key)."""
    if feature_weight < 0:
        raise ConfigValueError(
            'feature_weight', feature_weight,
            f'feature_weight={feature_weight} must be >= 0.')


class FeatureBranchMixin(MomentumTargetMixin):
    """``feature_decoder``, ``feature_head`` and the momentum
    ``target_encoder`` of an algorithm, with the weight of the feature loss:
    ``feature_weight`` (lambda) times ``feature_ramp`` (set by
    ``FeatureWeightRampHook``, 1 without it).

    Put the mixin before the algorithm's base class; call
    :meth:`build_feature_branch` in ``__init__`` (or set
    ``self.target_encoder = None`` for no feature branch).
    """

    def build_feature_branch(self, feature_decoder: dict, feature_head: dict,
                             target: nn.Module,
                             feature_weight: float) -> None:
        """Build the decoder and head from their configs and hold
        ``target`` (an encoder with ``encode(x).high_level``, same
        parameter names as ``self.backbone``) as the momentum target."""
        check_feature_weight(feature_weight)
        self.feature_decoder = MODELS.build(feature_decoder)
        self.feature_head = MODELS.build(feature_head)
        self.feature_weight = feature_weight
        self.feature_ramp = 1.0
        self.build_momentum_target(target)

    @property
    def current_feature_weight(self) -> float:
        """The weight of the feature loss at this step."""
        return self.feature_weight * self.feature_ramp

    def target_features(self, imgs: torch.Tensor) -> torch.Tensor:
        """The momentum target's features of every patch (high-level tap,
        no final norm, cls dropped), (B, N, D), without gradient."""
        # no_grad rather than inference_mode: the targets enter the loss's
        # autograd graph, which may not save inference tensors
        with torch.no_grad():
            return self.target_encoder.encode(imgs).high_level[:, 1:]
