from .non_finite_loss_hook import NonFiniteLossHook  # noqa: F401
from .feature_weight_ramp_hook import FeatureWeightRampHook  # noqa: F401
from .momentum_target_hook import MomentumTargetHook  # noqa: F401
