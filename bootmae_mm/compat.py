"""Compatibility shims for today's stack, in one place, applied on import.

Each shim is small, idempotent and covered by
``tests/compat/test_compat_shims.py``:

1. ``mmcv.ops`` without compiled extensions (mmcv-lite): mmseg 1.2 imports
   ``mmcv.ops`` at import time. When ``mmcv._ext`` is missing we install a
   ``mmcv.ops`` module that serves mmcv's own pure-PyTorch ``point_sample``
   and turns every other op into a placeholder that raises a clear error when
   used. With the full mmcv installed nothing is touched.
2. Safe checkpoint loading on torch >= 2.6: mmengine 0.10 calls ``torch.load``
   without ``weights_only``. We register, for local files and ``http(s)://``
   URLs, the loader of :mod:`bootmae_mm.interop.checkpoint_files`
   (``weights_only=True`` with an allow-list, URLs cached as mmengine does).
   ``HistoryBuffer`` is also made to pickle without bound-method
   references so that its state needs no ``getattr``.
3. SciPy >= 1.14 removed ``interp2d``; mmpretrain and mmseg resize relative
   position tables with it. We provide the equivalent bicubic spline.
4. setuptools >= 81 has no ``pkg_resources``; mmengine needs it to resolve
   ``mmseg::`` / ``mmpretrain::`` config bases. We look packages up with
   ``importlib.metadata`` instead.
"""
import importlib.util
import os.path as osp
import sys
import types

import numpy as np

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
def _history_buffer_getstate(self):
    state = self.__dict__.copy()
    state.pop('statistics_methods', None)  # restored from the class
    return state


def _install_safe_checkpoint_loading() -> None:
    from mmengine.logging.history_buffer import HistoryBuffer
    from mmengine.runner.checkpoint import CheckpointLoader

    from .interop.checkpoint_files import mmengine_checkpoint_loader
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
