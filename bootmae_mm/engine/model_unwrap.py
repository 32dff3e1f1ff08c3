"""The model inside a distributed wrapper."""
import torch
from mmengine.model import is_model_wrapper


def unwrap_model(model: torch.nn.Module) -> torch.nn.Module:
    """``model.module`` for a DDP / FSDP / mmengine model wrapper (e.g.
    ``runner.model`` in a distributed run), else ``model`` itself."""
    return model.module if is_model_wrapper(model) else model
