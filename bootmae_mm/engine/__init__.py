from . import atomic_backend, atomic_fsdp_strategy, fsdp_wrap_policy, hooks
