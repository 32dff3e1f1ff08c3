"""Fitting a GPU config to a machine without an accelerator: AMP falls back
to full precision, and the other GPU-only settings (pinned memory, SyncBN
across CPU processes, FSDP's device) to their CPU equivalents."""
import re
from typing import List

from mmengine.config import Config
from mmengine.device import (
    is_cuda_available,
    is_mlu_available,
    is_musa_available,
    is_npu_available,
)

from ..config_errors import key_paths
from ..feeding.switch import LOADERS

# AmpOptimWrapper's own arguments, which OptimWrapper refuses
_AMP_KEYS = ('dtype', 'loss_scale', 'use_fsdp')


def has_accelerator() -> bool:
    """Whether mmengine's ``AmpOptimWrapper`` can run here (a CUDA, NPU,
    MLU or MUSA device)."""
    return (is_cuda_available() or is_npu_available() or is_mlu_available()
            or is_musa_available())


def _wrapper_name(optim_wrapper) -> str:
    """The optim wrapper's type name without its scope (``'mmengine.X'``)."""
    kind = optim_wrapper.get('type', 'OptimWrapper')
    return (kind if isinstance(kind, str) else kind.__name__).split('.')[-1]


def fit_to_device(cfg: Config) -> List[str]:
    """Change, in place, the settings of ``cfg`` that need a GPU when none
    is present, and return them as ``key=value`` overrides (empty when
    nothing changed). A plain ``OptimWrapper`` loses the AMP-only keys
    (``dtype``, ``loss_scale``) a base config gave its ``AmpOptimWrapper``,
    on any machine and silently: that is what setting it means.

    Without an accelerator:

    - ``optim_wrapper.type='AmpOptimWrapper'`` (mmengine's, which refuses
      to build here) becomes ``'OptimWrapper'``: full precision;
    - ``pin_memory=True`` of a data loader becomes False (nothing to pin
      for);
    - in a distributed run, ``SyncBN`` becomes ``BN`` (torch's SyncBN
      refuses CPU tensors; one process alone syncs nothing anyway);
    - an FSDP strategy without ``model_wrapper.device_id`` gets ``'cpu'``
      (FSDP refuses to pick a device).
    """
    optim_wrapper = cfg.get('optim_wrapper')
    if isinstance(optim_wrapper, dict) and \
            _wrapper_name(optim_wrapper) == 'OptimWrapper':
        for key in _AMP_KEYS:
            optim_wrapper.pop(key, None)
    if has_accelerator():
        return []
    changes = []
    if isinstance(optim_wrapper, dict) and \
            _wrapper_name(optim_wrapper) == 'AmpOptimWrapper':
        optim_wrapper.type = 'OptimWrapper'
        for key in _AMP_KEYS:
            optim_wrapper.pop(key, None)
        changes.append('optim_wrapper.type=OptimWrapper')
    for key in LOADERS:
        loader = cfg.get(key)
        if isinstance(loader, dict) and loader.get('pin_memory'):
            loader.pin_memory = False
            changes.append(f'{key}.pin_memory=False')
    if cfg.get('launcher', 'none') != 'none':
        for path, holder in list(key_paths(cfg.get('model'), 'type',
                                           'model')):
            if holder['type'] == 'SyncBN':
                holder['type'] = 'BN'
                # --cfg-options writes list items as `.i`, not `[i]`
                path = re.sub(r'\[(\d+)\]', r'.\1', path)
                changes.append(f'{path}=BN')
    strategy = cfg.get('strategy')
    if isinstance(strategy, dict) and 'FSDP' in str(strategy.get('type')):
        wrapper = strategy.setdefault('model_wrapper', {})
        if wrapper.get('device_id') is None:
            wrapper['device_id'] = 'cpu'
            changes.append('strategy.model_wrapper.device_id=cpu')
    return changes


def fallback_message(changes: List[str]) -> str:
    """The one warning of a run whose config :func:`fit_to_device` changed:
    what changed and the ``--cfg-options`` that say so (and silence it)."""
    amp = ('optim_wrapper.type=OptimWrapper' in changes)
    return ('No GPU (or other accelerator) here: the GPU-only settings of '
            'the config fall back to CPU ones'
            + (' (full precision, fp32, instead of AMP)' if amp else '')
            + ': ' + ', '.join(changes) + '. To ask for exactly this and '
            'silence this warning, add: --cfg-options ' + ' '.join(changes))
