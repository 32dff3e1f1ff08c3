"""Checkpoint files (``bootmae_mm.interop.checkpoint_files``): weights_only
loading refuses crafted pickles, names the file it cannot read, and still
loads stock mmengine checkpoints (registered in mmengine by
``bootmae_mm.compat``)."""
import os.path as osp

import numpy as np
import pytest
import torch

import bootmae_mm  # noqa: F401  (applies the shims)
from bootmae_mm.interop.checkpoint_files import (
    UnsafeCheckpointError,
    safe_torch_load,
)
from helpers.malicious_checkpoint import (
    MkdirPayload,
    OpenPayload,
    save_malicious_checkpoint,
)


# --------------------------------------------------------------------------
# weights_only checkpoint loading
# --------------------------------------------------------------------------
@pytest.mark.parametrize('payload_cls', [OpenPayload, MkdirPayload])
def test_payload_really_runs_with_plain_pickle(tmp_path, payload_cls):
    """Control: the crafted files do run code when loaded unsafely."""
    marker = str(tmp_path / 'control_marker')
    ckpt = save_malicious_checkpoint(tmp_path / 'ctrl.pth',
                                     payload_cls(marker))
    obj = torch.load(ckpt, weights_only=False)
    assert osp.exists(marker)
    if hasattr(obj['meta']['note'], 'close'):
        obj['meta']['note'].close()


@pytest.mark.parametrize('payload_cls', [OpenPayload, MkdirPayload])
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
    ckpt = save_malicious_checkpoint(tmp_path / 'evil.pth',
                                     payload_cls(marker))
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
