from .exact_resume_hook import ExactResumeHook  # noqa: F401
from .feature_weight_ramp_hook import FeatureWeightRampHook  # noqa: F401
from .log_interval_runtime_info_hook import LogIntervalRuntimeInfoHook  # noqa: F401,E501
from .momentum_target_hook import MomentumTargetHook  # noqa: F401
from .non_finite_loss_hook import NonFiniteLossHook  # noqa: F401
from .reconstruction_visualization_hook import ReconstructionVisualizationHook  # noqa: F401,E501
from .resume_lr_hook import ResumeLrHook  # noqa: F401
from .worker_parent_death_hook import WorkerParentDeathHook  # noqa: F401
