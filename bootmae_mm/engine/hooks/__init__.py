from .bootmae_schedule_hooks import FeatureWeightRampHook, MomentumTargetHook
from .deferred_reads import (
    DeferredReadsHook,
    LogIntervalRuntimeInfoHook,
    NonFiniteLossHook,
)
from .exact_resume_hook import ExactResumeHook
from .reconstruction_visualization_hook import ReconstructionVisualizationHook
from .resume_lr_hook import ResumeLrHook
from .worker_parent_death_hook import WorkerParentDeathHook

__all__ = [
    'DeferredReadsHook', 'ExactResumeHook', 'FeatureWeightRampHook',
    'LogIntervalRuntimeInfoHook', 'MomentumTargetHook', 'NonFiniteLossHook',
    'ReconstructionVisualizationHook', 'ResumeLrHook', 'WorkerParentDeathHook'
]
