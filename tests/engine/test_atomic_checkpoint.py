"""Atomic checkpoints: a killed save never tears the previous checkpoint,
``last_checkpoint`` only moves after a complete save, keep-last-K works."""
import glob
import os
import os.path as osp
import signal
import subprocess
import sys
import time

import pytest
import torch
from mmengine.fileio import get_file_backend

import bootmae_mm  # noqa: F401
from bootmae_mm.engine.atomic_backend import (
    AtomicLocalBackend,
    read_last_checkpoint,
)
from bootmae_mm.interop.checkpoint_files import safe_torch_load
from helpers.repo import REPO_ROOT
from helpers.toy_runner import build_toy_runner

ATOMIC = dict(backend='atomic_local')


def _backend(path):
    backend = get_file_backend(str(path), backend_args=ATOMIC)
    assert isinstance(backend, AtomicLocalBackend)
    return backend


def test_put_replaces_atomically(tmp_path):
    path = tmp_path / 'iter_2.pth'
    torch.save({'w': torch.ones(3)}, path)
    (tmp_path / 'last_checkpoint').write_text(str(path))
    _backend(path).put(b'new bytes', path)
    assert path.read_bytes() == b'new bytes'
    assert oct(path.stat().st_mode & 0o777) == oct(0o666 & ~_umask())
    assert glob.glob(str(tmp_path / '.*.tmp')) == []


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_crash_before_rename_keeps_previous(tmp_path, monkeypatch):
    old = tmp_path / 'iter_2.pth'
    torch.save({'w': torch.ones(3)}, old)
    (tmp_path / 'last_checkpoint').write_text(str(old))
    backend = _backend(old)

    def crash(src, dst):
        raise OSError('simulated crash between write and rename')

    monkeypatch.setattr(os, 'replace', crash)
    with pytest.raises(OSError, match='simulated crash'):
        backend.put(b'x' * 1000, old)  # overwrite in place: must not tear
    with pytest.raises(OSError, match='simulated crash'):
        backend.put_text('half', tmp_path / 'last_checkpoint')
    monkeypatch.undo()
    assert torch.equal(safe_torch_load(old)['w'], torch.ones(3))
    assert read_last_checkpoint(tmp_path) == str(old)
    assert glob.glob(str(tmp_path / '.*.tmp')) == []


def test_fsdp_checkpoint_is_renamed_into_place_when_complete(
        tmp_path, monkeypatch):
    """AtomicFSDPStrategy around mmengine's FSDP save (replaced here by a
    writer that is killed half-way, then by one that completes; the real
    save runs in tests/e2e/test_distributed.py): the previous checkpoint
    survives the kill, the complete one replaces it."""
    from mmengine._strategy import FSDPStrategy

    from bootmae_mm.engine.atomic_fsdp_strategy import AtomicFSDPStrategy
    target = tmp_path / 'iter_4.pth'
    target.write_bytes(b'previous complete checkpoint')

    def killed_half_way(self, filename, **kwargs):
        with open(filename, 'wb') as f:
            f.write(b'half')
        raise KeyboardInterrupt

    def complete(self, filename, **kwargs):
        with open(filename, 'wb') as f:
            f.write(b'new checkpoint')

    monkeypatch.setattr(FSDPStrategy, '_is_full_state_dict', lambda _: True)
    strategy = AtomicFSDPStrategy.__new__(AtomicFSDPStrategy)
    monkeypatch.setattr(FSDPStrategy, 'save_checkpoint', killed_half_way)
    with pytest.raises(KeyboardInterrupt):
        strategy.save_checkpoint(str(target), save_optimizer=True)
    assert target.read_bytes() == b'previous complete checkpoint'
    monkeypatch.setattr(FSDPStrategy, 'save_checkpoint', complete)
    strategy.save_checkpoint(str(target), save_optimizer=True)
    assert target.read_bytes() == b'new checkpoint'
    assert sorted(p.name for p in tmp_path.iterdir()) == ['iter_4.pth']


def test_remove_defers_pointed_checkpoint(tmp_path):
    ckpts = [tmp_path / f'iter_{i}.pth' for i in (1, 2)]
    for c in ckpts:
        c.write_bytes(b'ckpt')
    (tmp_path / 'last_checkpoint').write_text(str(ckpts[0]))
    backend = _backend(tmp_path)
    backend.remove(ckpts[0])  # what max_keep_ckpts=1 does before a save
    assert ckpts[0].exists()
    backend.put(b'new', ckpts[1])
    assert ckpts[0].exists()  # the pointer has not moved yet
    (tmp_path / 'last_checkpoint').write_text(str(ckpts[1]))
    backend.remove(ckpts[1])
    assert not ckpts[0].exists() and ckpts[1].exists()


@pytest.mark.parametrize('keep', [3, 1])
def test_runner_keeps_last_k(tmp_path, keep):
    runner = build_toy_runner(tmp_path, max_iters=10, interval=2,
                              max_keep_ckpts=keep)
    runner.train()
    names = sorted(osp.basename(p) for p in glob.glob(str(tmp_path / '*.pth')))
    expected = [f'iter_{i}.pth' for i in (10, 8, 6)[:keep]]
    if keep == 1:  # the previous one survives until the pointer moves on
        expected.append('iter_8.pth')
    assert names == sorted(expected)
    assert read_last_checkpoint(tmp_path) == str(tmp_path / 'iter_10.pth')
    ckpt = safe_torch_load(tmp_path / 'iter_10.pth')
    assert ckpt['meta']['iter'] == 10
    assert glob.glob(str(tmp_path / '.*.tmp')) == []


def _toy(work_dir, *args):
    env = dict(os.environ, PYTHONPATH=REPO_ROOT)
    script = osp.join(REPO_ROOT, 'tests', 'helpers', 'toy_runner.py')
    return [sys.executable, script, str(work_dir), *args], env


def test_sigkill_during_save_then_resume(tmp_path):
    work_dir = tmp_path / 'work'
    cmd, env = _toy(work_dir, '--max-iters', '6', '--interval', '2',
                    '--pad-numel', str(4 * 2**20), '--slow-fsync')
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 240
        tmp_files = []
        while not tmp_files and time.time() < deadline:
            assert proc.poll() is None, proc.stdout.read().decode()
            tmp_files = glob.glob(str(work_dir / '.iter_4.pth.*.tmp'))
            time.sleep(0.05)
        assert tmp_files, 'the second checkpoint save never started'
        os.kill(proc.pid, signal.SIGKILL)  # killed inside the save
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL

    first = work_dir / 'iter_2.pth'
    assert not (work_dir / 'iter_4.pth').exists()
    assert read_last_checkpoint(work_dir) == str(first)
    ckpt = safe_torch_load(first)  # intact and loadable
    assert ckpt['meta']['iter'] == 2

    cmd, env = _toy(work_dir, '--max-iters', '6', '--interval', '2',
                    '--pad-numel', str(4 * 2**20), '--resume')
    out = subprocess.run(cmd, env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True, timeout=300)
    assert out.returncode == 0, out.stdout
    assert f'resumed from the latest checkpoint {first}' in out.stdout
    assert 'resumed epoch: 0, iter: 2' in out.stdout
    assert read_last_checkpoint(work_dir) == str(work_dir / 'iter_6.pth')
    assert safe_torch_load(work_dir / 'iter_6.pth')['meta']['iter'] == 6
    assert glob.glob(str(work_dir / '.*.tmp')) == []  # stale temp cleaned
