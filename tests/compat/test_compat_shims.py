"""The compatibility shims of ``bootmae_mm.compat``: mmcv.ops on mmcv-lite
and the interp2d replacement (the weights_only checkpoint loading that
compat registers is tested with its code, tests/interop/
test_checkpoint_files.py)."""
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import bootmae_mm  # noqa: F401  (applies the shims)
from bootmae_mm.compat import has_compiled_mmcv_ops
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


