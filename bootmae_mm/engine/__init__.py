from . import (
    atomic_backend,  # noqa: F401
    atomic_fsdp_strategy,  # noqa: F401
    fsdp_wrap_policy,  # noqa: F401
    hooks,  # noqa: F401
)
from .prefetch_train_loop import PrefetchEpochBasedTrainLoop  # noqa: F401
