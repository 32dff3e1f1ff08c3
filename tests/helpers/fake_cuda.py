"""Running a model on a fake ``cuda:0`` without a GPU or driver, with
``torch._subclasses.fake_tensor.FakeTensorMode``: tensors carry shapes,
dtypes and devices but no data, and mixing devices in one op raises
``FakeTensorDeviceMismatchError`` as CUDA would raise."""
import warnings
from contextlib import contextmanager

import torch
import torch.nn as nn
from torch._subclasses.fake_tensor import FakeTensor, FakeTensorMode
from torch.fx.experimental.symbolic_shapes import ShapeEnv

from bootmae_mm.feeding.prefetch_loop import batch_tensors

CUDA = torch.device('cuda', 0)


def fake_mode() -> FakeTensorMode:
    """A fake mode that refuses real tensors as inputs (each one must be
    made fake first, so none slips in unnoticed). Its shape environment
    lets an op whose output size depends on the data (``nonzero``, boolean
    indexing, as in mmseg's accuracy) run with a symbolic size; the sizes
    of the tensors made fake stay concrete."""
    return FakeTensorMode(allow_non_fake_inputs=False, shape_env=ShapeEnv(),
                          static_shapes=True)


def to_fake_cuda(mode: FakeTensorMode, tensor: torch.Tensor) -> FakeTensor:
    """``tensor`` as a fake tensor on ``cuda:0`` (a pinned CPU batch copied
    to the GPU)."""
    fake = mode.from_tensor(tensor.detach())
    with mode:
        return fake.to(CUDA)


def module_to_fake_cuda(mode: FakeTensorMode, module: nn.Module) -> None:
    """Replace every parameter and buffer of ``module`` by a fake one on
    ``cuda:0`` (``Module.to('cuda')`` would initialize CUDA, and refuses),
    and point mmengine's data preprocessors at that device."""
    for sub in module.modules():
        for name, param in list(sub._parameters.items()):
            if param is not None:
                sub._parameters[name] = nn.Parameter(
                    to_fake_cuda(mode, param),
                    requires_grad=param.requires_grad)
        for name, buf in list(sub._buffers.items()):
            if buf is not None:
                sub._buffers[name] = to_fake_cuda(mode, buf)
        if hasattr(sub, '_device'):  # mmengine's BaseDataPreprocessor
            sub._device = CUDA


@contextmanager
def cuda_autocast(dtype=torch.bfloat16):
    """``torch.autocast('cuda', dtype)`` switched on without CUDA (its
    constructor turns itself off, with a warning, when CUDA is
    unavailable; the dispatcher applies it to fake CUDA tensors all the
    same)."""
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        autocast = torch.autocast('cuda', dtype=dtype)
    autocast._enabled = True
    with autocast:
        yield


@contextmanager
def record_module_outputs(model: nn.Module):
    """Record ``(module name, module, output tensor)`` of every module's
    forward while the block runs (into the yielded list)."""
    records = []
    handles = [
        module.register_forward_hook(
            lambda mod, args, out, name=name: records.extend(
                (name, mod, t) for t in batch_tensors(out)))
        for name, module in model.named_modules()]
    try:
        yield records
    finally:
        for handle in handles:
            handle.remove()


def fake_batch(mode: FakeTensorMode, tree):
    """A collated batch with every tensor (also those inside data samples
    and their pixel data) replaced by a fake one on the same (CPU) device:
    the batch a data loader hands over, ready for the data preprocessor."""
    if isinstance(tree, torch.Tensor):
        return mode.from_tensor(tree)
    if isinstance(tree, dict):
        return {k: fake_batch(mode, v) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(fake_batch(mode, v) for v in tree)
    if hasattr(tree, 'all_items'):  # BaseDataElement (a copy)
        element = tree.clone()
        for key, value in tree.all_items():
            if isinstance(value, torch.Tensor) or hasattr(value,
                                                          'all_items'):
                setattr(element, key, fake_batch(mode, value))
        return element
    return tree
