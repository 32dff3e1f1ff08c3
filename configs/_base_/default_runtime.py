# Default runtime for every bootmae-mm config (mmpretrain style), with the
# reliability defaults of docs/reliability.md.
default_scope = 'mmpretrain'

# register bootmae_mm's components (and apply its compatibility shims)
custom_imports = dict(imports=['bootmae_mm'], allow_failed_imports=False)

default_hooks = dict(
    # put the step's logged values into the message hub at the logging
    # interval (one read) rather than with .item() after every step
    runtime_info=dict(type='LogIntervalRuntimeInfoHook'),
    # record the time of every iteration
    timer=dict(type='IterTimerHook'),
    # print log every 50 iterations
    logger=dict(type='LoggerHook', interval=50),
    # enable the parameter schedulers
    param_scheduler=dict(type='ParamSchedulerHook'),
    # save a checkpoint every epoch, atomically (temp file + fsync + rename),
    # keeping the last 3; `last_checkpoint` moves only after a complete save
    checkpoint=dict(
        type='CheckpointHook',
        interval=1,
        max_keep_ckpts=3,
        backend_args=dict(backend='atomic_local')),
    # set the sampler seed (and epoch) in distributed environments
    sampler_seed=dict(type='DistSamplerSeedHook'),
    # exact resume: a run resumed mid-epoch continues at the next batch, and
    # every iteration's random state is a function of (seed, iteration)
    exact_resume=dict(type='ExactResumeHook'),
    # stop at the first NaN/Inf loss, before a poisoned checkpoint is written
    # (a default hook, so that configs adding `custom_hooks` keep it)
    non_finite_loss=dict(type='NonFiniteLossHook'),
    # data-loader workers die with the training process (even on SIGKILL)
    worker_parent_death=dict(type='WorkerParentDeathHook'),
    # a run resumed with a new optim_wrapper.optimizer.lr trains with it
    resume_lr=dict(type='ResumeLrHook'),
    # validation results visualization, set True to enable it
    visualization=dict(type='VisualizationHook', enable=False),
)

env_cfg = dict(
    # whether to enable cudnn benchmark
    cudnn_benchmark=False,
    # multi-process parameters
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    # distributed parameters
    dist_cfg=dict(backend='nccl'),
)

vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(type='UniversalVisualizer', vis_backends=vis_backends)

log_level = 'INFO'

# load from which checkpoint
load_from = None

# whether to resume training from the loaded checkpoint
resume = False

# A fixed seed, so that a run is reproducible (and a resumed run continues
# the same random streams); each rank gets seed + rank so that random masks
# and augmentations differ between ranks (as mmpretrain's MAE configs do).
# `deterministic=True` (slower, deterministic cuDNN / torch kernels) is left
# off for speed; turn it on for bit-exact comparisons on GPU.
randomness = dict(seed=0, diff_rank_seed=True, deterministic=False)
