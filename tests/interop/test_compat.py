"""The compatibility shims of ``bootmae_mm.compat``: mmcv.ops on mmcv-lite,
the interp2d replacement, and weights_only checkpoint loading."""
import builtins
import os
import os.path as osp
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import bootmae_mm  # noqa: F401  (applies the shims)
from bootmae_mm.compat import has_compiled_mmcv_ops
from bootmae_mm.interop.checkpoint_files import (
    UnsafeCheckpointError,
    safe_torch_load,
)
from helpers.repo import run_tool

lite_only = pytest.mark.skipif(
    has_compiled_mmcv_ops(), reason='full mmcv installed: shim inactive')


# --------------------------------------------------------------------------
# 1. mmcv.ops on mmcv-lite
# --------------------------------------------------------------------------
@lite_only
def test_import_bootmae_mm_makes_mmcv_ops_importable():
    code = '\n'.join([
        'try:',
        '    import mmcv.ops',
        "    print('BARE-OK')",
        'except ImportError:',
        "    print('BARE-FAILS')",
        'import bootmae_mm',
        'from mmcv.ops import point_sample',
        'import mmseg.models',
        "print('SHIM-OK', point_sample.__module__)",
    ])
    out = run_tool([sys.executable, '-c', code], timeout=120)
    assert out.returncode == 0, out.stdout
    # without the shim mmcv-lite has no usable mmcv.ops; with it mmseg loads
    assert 'BARE-FAILS' in out.stdout
    assert 'SHIM-OK mmcv.ops.point_sample' in out.stdout


@lite_only
def test_point_sample_matches_grid_sample():
    from mmcv.ops import point_sample
    torch.manual_seed(0)
    feats = torch.randn(2, 3, 5, 7)
    points = torch.rand(2, 4, 2)  # (x, y) in [0, 1]
    out = point_sample(feats, points, align_corners=False)
    expected = F.grid_sample(
        feats, 2 * points.unsqueeze(2) - 1, align_corners=False).squeeze(3)
    assert out.shape == (2, 3, 4)
    torch.testing.assert_close(out, expected)
    # the centre of a 2x2 map is the mean of its four values
    grid = torch.tensor([[[[0., 1.], [2., 3.]]]])
    centre = point_sample(grid, torch.tensor([[[0.5, 0.5]]]))
    assert centre.item() == pytest.approx(1.5)


@lite_only
def test_other_ops_fail_only_when_used():
    import mmcv.ops
    from mmcv.ops import DeformConv2d  # importing is fine
    assert mmcv.ops.DeformConv2d is DeformConv2d
    with pytest.raises(RuntimeError, match='DeformConv2d.*mmcv-lite'):
        DeformConv2d(3, 3, 3)


# --------------------------------------------------------------------------
# 2. scipy interp2d
# --------------------------------------------------------------------------
def _cubic_surface(x, y):
    """A polynomial of degree <= 3 in x and in y: a cubic spline is exact."""
    return 1 + 0.5 * x - 2 * y + 0.3 * x * y + 0.1 * x**3 - 0.2 * y**2 \
        + 0.05 * x**2 * y**3


def test_interp2d_cubic_is_exact_on_cubic_surface():
    from scipy import interpolate
    x = np.array([-3., -1.5, -0.5, 0., 0.7, 2., 3.5])
    y = np.array([-2., -1., 0., 1., 2.5, 4.])
    z = _cubic_surface(x[None, :], y[:, None])  # shape (len(y), len(x))
    f = interpolate.interp2d(x, y, z, kind='cubic')
    xn = np.array([1.0, -2.5, 0.25, 3.0])  # unsorted, like interp2d allowed
    yn = np.linspace(-2, 4, 5)
    out = f(xn, yn)
    assert out.shape == (len(yn), len(xn))
    expected = _cubic_surface(np.sort(xn)[None, :], yn[:, None])
    np.testing.assert_allclose(out, expected, atol=1e-9)
    # one output row comes back 1-D, as with scipy's interp2d
    assert f(xn, [0.5]).shape == (len(xn), )


def test_mmpretrain_resize_relative_position_table_runs_through_shim(
        monkeypatch):
    from mmpretrain.models.utils.embed import (
        resize_relative_position_bias_table,
    )
    from scipy import interpolate
    grids = []
    shim = interpolate.interp2d

    def spy(x, y, z, kind='linear'):
        grids.append((np.asarray(x), np.asarray(y), kind))
        return shim(x, y, z, kind=kind)

    monkeypatch.setattr(interpolate, 'interp2d', spy)
    src, dst, heads = 7, 11, 2
    resize_relative_position_bias_table(src, dst, torch.zeros(src**2, heads),
                                        heads)
    x, y, kind = grids[0]  # the geometric grid mmpretrain builds
    assert kind == 'cubic' and len(x) == src

    table = torch.stack([
        torch.from_numpy(_cubic_surface(x[None, :], y[:, None])).flatten(),
        torch.from_numpy(-_cubic_surface(y[:, None], x[None, :])).flatten()
    ], dim=1).float()
    out = resize_relative_position_bias_table(src, dst, table, heads)
    assert out.shape == (dst**2, heads)
    # like scipy's interp2d (FITPACK bispev) the spline is held constant
    # beyond the source grid, which ends just inside +-(dst // 2)
    t = np.clip(np.arange(-(dst // 2), dst // 2 + 0.1), x.min(), x.max())
    expected0 = _cubic_surface(t[None, :], t[:, None]).ravel()
    expected1 = -_cubic_surface(t[:, None], t[None, :]).ravel()
    np.testing.assert_allclose(out[:, 0].numpy(), expected0, rtol=1e-4,
                               atol=1e-3)
    np.testing.assert_allclose(out[:, 1].numpy(), expected1, rtol=1e-4,
                               atol=1e-3)


# --------------------------------------------------------------------------
# 3. weights_only checkpoint loading
# --------------------------------------------------------------------------
class _OpenPayload:
    """Unpickling it calls ``builtins.open(marker, 'w')``: creates a file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (builtins.open, (self.marker, 'w'))


class _MkdirPayload(_OpenPayload):
    """Unpickling it calls ``os.mkdir(marker)``."""

    def __reduce__(self):
        return (os.mkdir, (self.marker, ))


def _malicious_checkpoint(path, payload):
    """A checkpoint that looks normal but hides the payload in ``meta``."""
    torch.save(dict(state_dict=dict(weight=torch.ones(2)),
                    meta=dict(note=payload)), str(path))
    return str(path)


@pytest.mark.parametrize('payload_cls', [_OpenPayload, _MkdirPayload])
def test_payload_really_runs_with_plain_pickle(tmp_path, payload_cls):
    """Control: the crafted files do run code when loaded unsafely."""
    marker = str(tmp_path / 'control_marker')
    ckpt = _malicious_checkpoint(tmp_path / 'ctrl.pth', payload_cls(marker))
    obj = torch.load(ckpt, weights_only=False)
    assert osp.exists(marker)
    if hasattr(obj['meta']['note'], 'close'):
        obj['meta']['note'].close()


@pytest.mark.parametrize('payload_cls', [_OpenPayload, _MkdirPayload])
@pytest.mark.parametrize('entry', [
    'safe_torch_load', '_load_checkpoint', 'load_checkpoint',
    'CheckpointLoader'
])
def test_crafted_checkpoint_is_refused(tmp_path, payload_cls, entry):
    from mmengine.runner.checkpoint import (
        CheckpointLoader,
        _load_checkpoint,
        load_checkpoint,
    )
    marker = str(tmp_path / 'pwned')
    ckpt = _malicious_checkpoint(tmp_path / 'evil.pth', payload_cls(marker))
    calls = {
        'safe_torch_load': lambda: safe_torch_load(ckpt),
        '_load_checkpoint': lambda: _load_checkpoint(ckpt, 'cpu'),
        'load_checkpoint':
        lambda: load_checkpoint(torch.nn.Linear(2, 1), ckpt, 'cpu'),
        'CheckpointLoader': lambda: CheckpointLoader.load_checkpoint(ckpt),
    }
    with pytest.raises(UnsafeCheckpointError) as err:
        calls[entry]()
    assert ckpt in str(err.value)
    assert 'allow-list' in str(err.value)
    assert not osp.exists(marker), 'the checkpoint ran code'


def test_getattr_is_served_only_for_history_buffer_statistics(tmp_path):
    from mmengine.logging.history_buffer import HistoryBuffer

    class Sneaky:

        def __reduce__(self):
            return (getattr, (HistoryBuffer, '__init__'))

    ckpt = str(tmp_path / 'getattr.pth')
    torch.save(dict(x=Sneaky()), ckpt)
    with pytest.raises(UnsafeCheckpointError, match='getattr'):
        safe_torch_load(ckpt)


def _as_saved_under_numpy_1(ckpt):
    """Rewrite a checkpoint as numpy 1.x pickles arrays and scalars: by
    ``numpy.core.multiarray`` (numpy 2: ``numpy._core.multiarray``)."""
    import zipfile
    with zipfile.ZipFile(ckpt) as z:
        files = {n: z.read(n) for n in z.namelist()}
    pkl = next(n for n in files if n.endswith('data.pkl'))
    assert b'numpy._core.multiarray' in files[pkl]
    files[pkl] = files[pkl].replace(b'numpy._core.multiarray',
                                    b'numpy.core.multiarray')
    with zipfile.ZipFile(ckpt, 'w') as z:
        for name, data in files.items():
            z.writestr(name, data)


@pytest.mark.parametrize('numpy_major', [2, 1])
def test_stock_mmengine_message_hub_checkpoint_loads(tmp_path, monkeypatch,
                                                     numpy_major):
    """Checkpoints saved by mmengine without our shim pickle HistoryBuffer's
    statistics methods by reference; they must still load, also when numpy
    1.x wrote them (its module names)."""
    from mmengine.logging import MessageHub
    from mmengine.logging.history_buffer import HistoryBuffer

    def stock_getstate(self):  # mmengine 0.10.7's own __getstate__
        self.__dict__.update(statistics_methods=self._statistics_methods)
        return self.__dict__

    hub = MessageHub.get_instance('stock_hub_test')
    hub.update_scalar('train/loss', np.float64(0.5))
    hub.update_scalar('train/loss', 1.5)
    hub.update_info('iter', 3)
    ckpt = str(tmp_path / 'stock.pth')
    monkeypatch.setattr(HistoryBuffer, '__getstate__', stock_getstate)
    torch.save(dict(message_hub=hub.state_dict(), meta=dict(
        seed=np.int64(3), acc=np.float32(0.25))), ckpt)
    monkeypatch.undo()
    if numpy_major == 1:
        _as_saved_under_numpy_1(ckpt)

    loaded = safe_torch_load(ckpt)
    restored = MessageHub.get_instance('stock_hub_test_restored')
    restored.load_state_dict(loaded['message_hub'])
    assert restored.get_scalar('train/loss').mean() == pytest.approx(1.0)
    assert restored.get_info('iter') == 3
    assert loaded['meta']['seed'] == 3


def test_unreadable_checkpoint_names_the_file(tmp_path):
    bad = tmp_path / 'truncated.pth'
    bad.write_bytes(b'not a checkpoint at all')
    with pytest.raises(RuntimeError, match='truncated.pth'):
        safe_torch_load(str(bad))
    with pytest.raises(FileNotFoundError, match='missing.pth'):
        safe_torch_load(str(tmp_path / 'missing.pth'))
