from .bootmae_schedule_hooks import FeatureWeightRampHook, MomentumTargetHook
from .exact_resume_hook import ExactResumeHook
from .log_interval_runtime_info_hook import LogIntervalRuntimeInfoHook
from .non_finite_loss_hook import NonFiniteLossHook
from .reconstruction_visualization_hook import ReconstructionVisualizationHook
from .resume_lr_hook import ResumeLrHook
from .worker_parent_death_hook import WorkerParentDeathHook

__all__ = [
    'ExactResumeHook', 'FeatureWeightRampHook', 'LogIntervalRuntimeInfoHook',
    'MomentumTargetHook', 'NonFiniteLossHook',
    'ReconstructionVisualizationHook', 'ResumeLrHook', 'WorkerParentDeathHook'
]
