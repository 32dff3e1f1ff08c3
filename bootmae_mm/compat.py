"""Compatibility shims for today's stack, in one place, applied on import.

Each shim is small, idempotent and covered by ``tests/interop/test_compat.py``:

1. ``mmcv.ops`` without compiled extensions (mmcv-lite): mmseg 1.2 imports
   ``mmcv.ops`` at import time. When ``mmcv._ext`` is missing we install a
   ``mmcv.ops`` module that serves mmcv's own pure-PyTorch ``point_sample``
   and turns every other op into a placeholder that raises a clear error when
   used. With the full mmcv installed nothing is touched.
2. Safe checkpoint loading on torch >= 2.6: mmengine 0.10 calls ``torch.load``
   without ``weights_only``. We register a local-file loader that always uses
   ``weights_only=True`` with an allow-list of the exact types an mmengine
   checkpoint needs (``HistoryBuffer`` and numpy arrays / scalars), and that
   names the file and the refused type when a checkpoint carries anything
   else. ``HistoryBuffer`` is also made to pickle without bound-method
   references so that its state needs no ``getattr``. ``http(s)://``
   checkpoints (mmengine would ``torch.load`` them with ``weights_only``
   off) are downloaded once into torch's hub cache, as mmengine does, and
   read with the same loader.
3. SciPy >= 1.14 removed ``interp2d``; mmpretrain and mmseg resize relative
   position tables with it. We provide the equivalent bicubic spline.
4. setuptools >= 81 has no ``pkg_resources``; mmengine needs it to resolve
   ``mmseg::`` / ``mmpretrain::`` config bases. We look packages up with
   ``importlib.metadata`` instead.
"""
import argparse
import importlib.util
import os.path as osp
import pickle
import sys
import types

import numpy as np
import torch

_APPLIED = False


# --------------------------------------------------------------------------
# 1. mmcv.ops on mmcv-lite
# --------------------------------------------------------------------------
def has_compiled_mmcv_ops() -> bool:
    """Whether the installed mmcv ships its compiled extension."""
    return importlib.util.find_spec('mmcv._ext') is not None


class _MissingOp:
    """Placeholder for an mmcv op that needs the compiled extension."""
    op_name = 'op'

    def __new__(cls, *args, **kwargs):
        raise RuntimeError(
            f'mmcv.ops.{cls.op_name} needs the full mmcv with compiled ops, '
            'but mmcv-lite is installed. See requirements/optional.txt.')


def _install_lite_mmcv_ops() -> None:
    if 'mmcv.ops' in sys.modules or has_compiled_mmcv_ops():
        return
    import mmcv
    ops_dir = osp.join(osp.dirname(mmcv.__file__), 'ops')
    spec = importlib.util.spec_from_file_location(
        'mmcv.ops.point_sample', osp.join(ops_dir, 'point_sample.py'))
    point_sample_mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(point_sample_mod)

    ops = types.ModuleType('mmcv.ops')
    ops.__path__ = []  # a package, so `import mmcv.ops.point_sample` works
    ops.__file__ = __file__
    ops.point_sample = point_sample_mod
    for name in ('point_sample', 'bilinear_grid_sample',
                 'rel_roi_point_to_rel_img_point'):
        setattr(ops, name, getattr(point_sample_mod, name))

    def __getattr__(name):
        if name.startswith('__'):
            raise AttributeError(name)
        placeholder = type(name, (_MissingOp, ), dict(op_name=name))
        setattr(ops, name, placeholder)
        return placeholder

    ops.__getattr__ = __getattr__
    sys.modules['mmcv.ops'] = ops
    sys.modules['mmcv.ops.point_sample'] = point_sample_mod
    mmcv.ops = ops


# --------------------------------------------------------------------------
# 2. weights_only checkpoint loading
# --------------------------------------------------------------------------
class UnsafeCheckpointError(pickle.UnpicklingError):
    """A checkpoint holds a type outside the allow-list."""


def safe_checkpoint_globals() -> list:
    """The exact non-tensor types an mmengine/mmpretrain checkpoint needs."""
    from mmengine.logging.history_buffer import HistoryBuffer
    multiarray = np._core.multiarray if hasattr(np, '_core') \
        else np.core.multiarray
    dtype_classes = [type(np.dtype(t)) for t in (
        np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8,
        np.float16, np.float32, np.float64, np.str_)]
    # numpy 1.x pickled these as numpy.core.multiarray.*: checkpoints saved
    # before numpy 2 (most published ones) name them so
    numpy1_names = [(fn, f'numpy.core.multiarray.{fn.__name__}')
                    for fn in (multiarray._reconstruct, multiarray.scalar)]
    # the published reference checkpoints keep their arguments in an
    # argparse.Namespace (a plain attribute bag: nothing is called)
    return [argparse.Namespace,
            HistoryBuffer, np.ndarray, np.dtype, multiarray._reconstruct,
            multiarray.scalar, *dtype_classes, *numpy1_names,
            (_history_buffer_getattr, 'builtins.getattr')]


_HISTORY_BUFFER_METHODS = ('min', 'max', 'current', 'mean')


def _history_buffer_getattr(obj, name):
    """Stands in for ``builtins.getattr`` while unpickling: checkpoints saved
    by stock mmengine pickle ``HistoryBuffer``'s statistics methods as
    ``getattr(HistoryBuffer, 'mean')``. Only those four lookups are served."""
    from mmengine.logging.history_buffer import HistoryBuffer
    if obj is HistoryBuffer and name in _HISTORY_BUFFER_METHODS:
        return getattr(obj, name)
    raise pickle.UnpicklingError(
        f'getattr({obj!r}, {name!r}) is not in the allow-list')


def safe_torch_load(filename, map_location='cpu'):
    """``torch.load`` with ``weights_only=True`` and our allow-list.

    Raises:
        FileNotFoundError: the file does not exist (names it).
        UnsafeCheckpointError: the file holds a type outside the allow-list
            (names the file and the type); no code of the file has run.
        RuntimeError: the file is not a readable checkpoint (names it).
    """
    filename = osp.expanduser(str(filename))
    if not osp.isfile(filename):
        raise FileNotFoundError(f'checkpoint {filename} can not be found.')
    try:
        with torch.serialization.safe_globals(safe_checkpoint_globals()):
            return torch.load(filename, map_location=map_location,
                              weights_only=True)
    except pickle.UnpicklingError as e:
        reason = _unpickler_reason(e)
        if 'global' not in reason.lower() and 'allow-list' not in reason:
            raise RuntimeError(
                f'Could not read checkpoint {filename}: it is corrupt or not '
                f'a torch checkpoint; nothing of it was run ({reason})') \
                from None
        raise UnsafeCheckpointError(
            f'Refused to load checkpoint {filename}: it holds a Python '
            'object outside the allow-list of safe types, and loading it '
            f'could run code. Details: {reason}') from None
    except (RuntimeError, EOFError, OSError) as e:
        raise RuntimeError(f'Could not read checkpoint {filename}: it is '
                           f'truncated or not a torch checkpoint ({e})') \
            from None


def checkpoint_cache_path(url: str) -> str:
    """Where an ``http(s)://`` checkpoint is kept: ``<torch hub
    dir>/checkpoints/<file name of the URL>``, the cache mmengine's and
    torch's ``load_url`` use."""
    from urllib.parse import urlparse
    name = osp.basename(urlparse(url).path)
    if not name:
        raise ValueError(f'checkpoint URL {url} names no file.')
    return osp.join(torch.hub.get_dir(), 'checkpoints', name)


def download_checkpoint(url: str) -> str:
    """The local copy of the checkpoint at ``url``, downloaded (by local
    rank 0 when distributed; the others wait) unless already cached.

    Raises:
        RuntimeError: the download failed (names the URL).
    """
    import os

    from mmengine.dist import get_dist_info
    cached = checkpoint_cache_path(url)
    rank, world_size = get_dist_info()
    local_rank = int(os.environ.get('LOCAL_RANK', rank))
    if local_rank == 0 and not osp.isfile(cached):
        os.makedirs(osp.dirname(cached), exist_ok=True)
        print(f'Downloading {url} to {cached}', file=sys.stderr)
        try:
            # writes a temporary file and renames it when complete
            torch.hub.download_url_to_file(url, cached, progress=False)
        except Exception as e:  # URLError, HTTPError, OSError ...
            raise RuntimeError(f'Could not download checkpoint {url}: {e}'
                               ) from None
    if world_size > 1:
        torch.distributed.barrier()
    return cached


def safe_load_checkpoint(filename, map_location='cpu'):
    """:func:`safe_torch_load` of a local file or of an ``http(s)://`` URL
    (see :func:`download_checkpoint`)."""
    filename = str(filename)
    if filename.startswith(('http://', 'https://')):
        filename = download_checkpoint(filename)
    return safe_torch_load(filename, map_location)


# ``(checkpoint, filename) -> checkpoint`` functions that mmengine's loaders
# (below) apply to what they read: how a checkpoint in another layout (the
# reference implementation's) reaches mmengine's load_checkpoint, load_from
# and mmpretrain's get_model in mmengine's layout
_CHECKPOINT_ADAPTERS = []


def register_checkpoint_adapter(adapter) -> None:
    """Have mmengine's checkpoint loaders apply ``adapter(checkpoint,
    filename)`` to every checkpoint they read (once per function)."""
    if adapter not in _CHECKPOINT_ADAPTERS:
        _CHECKPOINT_ADAPTERS.append(adapter)


def mmengine_checkpoint_loader(filename, map_location='cpu'):
    """mmengine's loader for local files and ``http(s)://`` URLs:
    :func:`safe_load_checkpoint`, then the registered adapters."""
    ckpt = safe_load_checkpoint(filename, map_location)
    for adapter in _CHECKPOINT_ADAPTERS:
        ckpt = adapter(ckpt, str(filename))
    return ckpt


def _unpickler_reason(err) -> str:
    """The line of torch's weights_only error that names the refused
    global (torch wraps it in a long advice text)."""
    text = str(err)
    if 'WeightsUnpickler error:' in text:
        text = text.split('WeightsUnpickler error:', 1)[1]
        text = text.split('Please use')[0].split('Check the documentation')[0]
    return ' '.join(text.split()) or type(err).__name__


def _history_buffer_getstate(self):
    state = self.__dict__.copy()
    state.pop('statistics_methods', None)  # restored from the class
    return state


def _install_safe_checkpoint_loading() -> None:
    from mmengine.logging.history_buffer import HistoryBuffer
    from mmengine.runner.checkpoint import CheckpointLoader
    HistoryBuffer.__getstate__ = _history_buffer_getstate
    CheckpointLoader.register_scheme(
        prefixes=('', 'http://', 'https://'),
        loader=mmengine_checkpoint_loader, force=True)


# --------------------------------------------------------------------------
# 3. scipy.interpolate.interp2d
# --------------------------------------------------------------------------
class _Interp2d:
    """Drop-in for the removed ``interp2d(x, y, z, kind='cubic')`` on a
    regular grid: z has shape (len(y), len(x)); ``f(xn, yn)`` returns
    shape (len(yn), len(xn))."""

    def __init__(self, x, y, z, kind='linear', **kwargs):
        from scipy.interpolate import RectBivariateSpline
        k = dict(linear=1, cubic=3, quintic=5)[kind]
        x, y, z = np.ravel(x), np.ravel(y), np.asarray(z)
        ix, iy = np.argsort(x), np.argsort(y)  # interp2d sorted the grid
        self._spline = RectBivariateSpline(
            y[iy], x[ix], z[np.ix_(iy, ix)], kx=k, ky=k)

    def __call__(self, x, y):
        # like interp2d: evaluates on the sorted grid; one row comes back 1-D
        z = self._spline(np.sort(np.atleast_1d(y)), np.sort(np.atleast_1d(x)))
        return z[0] if len(z) == 1 else z


def _install_interp2d() -> None:
    from scipy import interpolate
    try:
        interpolate.interp2d([0, 1], [0, 1], [[0, 0], [0, 0]])
    except (NotImplementedError, AttributeError, TypeError):
        interpolate.interp2d = _Interp2d


# --------------------------------------------------------------------------
# 4. package lookup without pkg_resources (setuptools >= 81 dropped it)
# --------------------------------------------------------------------------
def _is_installed(package: str) -> bool:
    """``mmengine.utils.is_installed`` on ``importlib.metadata``."""
    import importlib.metadata
    try:
        importlib.metadata.distribution(package)
        return True
    except importlib.metadata.PackageNotFoundError:
        spec = importlib.util.find_spec(package)
        return spec is not None and spec.origin is not None


def _get_installed_path(package: str) -> str:
    """``mmengine.utils.get_installed_path`` on ``importlib.metadata``: the
    folder of the package's top-level module."""
    import importlib.metadata
    spec = importlib.util.find_spec(package)
    if spec is None:  # distribution name != module name (mmcv-full -> mmcv)
        dist = importlib.metadata.distribution(package)
        top_level = (dist.read_text('top_level.txt') or package).split()
        spec = importlib.util.find_spec(top_level[0])
    if spec is None or spec.origin is None:
        raise RuntimeError(f'can not find the installed path of {package}')
    return osp.dirname(spec.origin)


def _install_package_lookup() -> None:
    """mmengine resolves ``mmseg::`` / ``mmpretrain::`` config bases with
    ``pkg_resources``; without it, use ``importlib.metadata``."""
    if importlib.util.find_spec('pkg_resources') is not None:
        return
    import mmengine.config.config as config_module
    import mmengine.utils as utils
    from mmengine.utils import package_utils
    for module in (package_utils, utils, config_module):
        module.is_installed = _is_installed
        module.get_installed_path = _get_installed_path


def apply() -> None:
    """Apply every shim once."""
    global _APPLIED
    if _APPLIED:
        return
    _install_lite_mmcv_ops()
    _install_safe_checkpoint_loading()
    _install_interp2d()
    _install_package_lookup()
    _APPLIED = True
