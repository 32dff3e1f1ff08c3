"""What a run of ``tools/train.py`` (in a subprocess) leaves and says when
it is killed, resumed from a damaged work dir, given a checkpoint of another
model, resumed with a new lr, or out of disk space (docs/reliability.md,
"Killed runs", "Resume", "Errors that end a run")."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from helpers.demo_pretrain import (
    DEMO_CONFIG,
    ITER_LINE,
    run_train_tool,
    write_tiny_demo_config,
)
from helpers.repo import REPO_ROOT, tool_env


def _session_processes(sid):
    """{pid: state} of the live processes of session ``sid`` (zombies,
    already dead, are left out)."""
    found = {}
    for entry in os.listdir('/proc'):
        if not entry.isdigit():
            continue
        try:
            with open(f'/proc/{entry}/stat') as f:
                stat = f.read()
        except OSError:  # gone meanwhile
            continue
        # pid (comm) state ppid pgrp session ...; comm may hold spaces
        fields = stat[stat.rindex(')') + 2:].split()
        if int(fields[3]) == sid and fields[0] != 'Z':
            found[int(entry)] = fields[0]
    return found


def test_sigkilled_run_leaves_no_dataloader_worker(tmp_path):
    """SIGKILL of the main process of the demo run (2 data-loader workers,
    600 pictures, batches of 32) at its second iteration: 10 s later no
    process of the run is left (the workers used to stay forever,
    re-parented, in a futex wait)."""
    log_path = tmp_path / 'out.txt'
    with open(log_path, 'w') as log:
        proc = subprocess.Popen(
            [sys.executable, 'tools/train.py', DEMO_CONFIG, '--work-dir',
             str(tmp_path / 'work'), '--cfg-options',
             f'train_dataloader.dataset.dataset.root={tmp_path / "data"}',
             'default_hooks.logger.interval=1', 'log_processor.by_epoch=0',
             'default_hooks.checkpoint.interval=1000'],
            cwd=REPO_ROOT, env=tool_env(), stdout=log,
            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        while not [m for m in ITER_LINE.finditer(log_path.read_text())
                   if int(m.group(1)) >= 2]:
            assert proc.poll() is None, log_path.read_text()[-3000:]
            time.sleep(0.2)
        workers = set(_session_processes(proc.pid)) - {proc.pid}
        assert len(workers) >= 2, workers  # the two loader workers
        os.kill(proc.pid, signal.SIGKILL)  # the main process only
        proc.wait()
        deadline = time.monotonic() + 10
        while _session_processes(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _session_processes(proc.pid) == {}
    finally:
        for pid in _session_processes(proc.pid):
            os.kill(pid, signal.SIGKILL)


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    """The tiny config trained 2 epochs (6 iterations), a checkpoint every 3
    iterations: ``iter_3.pth``, ``iter_6.pth``."""
    root = tmp_path_factory.mktemp('trained')
    config = write_tiny_demo_config(root / 'tiny.py', root / 'data',
                               num_workers=0, persistent=False, max_epochs=2,
                               ckpt_interval=3)
    code, out, iters = run_train_tool(config, root / 'work')
    assert code == 0 and iters[-1] == 6, out[-3000:]
    return config, root / 'work'


def _copy(trained, tmp_path):
    work = tmp_path / 'work'
    shutil.copytree(trained[1], work)
    (work / 'last_checkpoint').write_text(str(work / 'iter_6.pth'))
    return trained[0], work


def _logged(work, key):
    """{iteration: value} of a scalar in the runs' scalars.json files."""
    values = {}
    for path in sorted(work.glob('*/vis_data/scalars.json')):
        for line in path.read_text().splitlines():
            row = json.loads(line)
            if key in row:
                values[row['iter']] = row[key]
    return values


def _log_files_text(work):
    return ''.join(p.read_text() for p in work.glob('*/*.log'))


def test_resume_skips_a_truncated_newest_checkpoint(trained, tmp_path):
    """No ``last_checkpoint`` and the newest checkpoint cut short (a full
    disk, a bad copy): ``--resume auto`` continues from the newest complete
    one, naming the skipped file (it used to try the torn file and die)."""
    config, work = _copy(trained, tmp_path)
    newest = work / 'iter_6.pth'
    newest.write_bytes(newest.read_bytes()[:newest.stat().st_size // 2])
    (work / 'last_checkpoint').unlink()
    code, out, iters = run_train_tool(config, work, resume=True,
                             extra=['--cfg-options', 'train_cfg.max_epochs=3'])
    assert code == 0, out[-3000:]
    assert f'skipping {newest}, which is not a complete checkpoint' in out
    assert 'resumed epoch: 0, iter: 3' in out, out[-3000:]
    assert iters == list(range(4, 10))


def test_resume_warns_when_the_pointer_names_a_missing_file(trained,
                                                            tmp_path):
    config, work = _copy(trained, tmp_path)
    gone = work / 'iter_99.pth'
    (work / 'last_checkpoint').write_text(str(gone))
    code, out, iters = run_train_tool(config, work, resume=True,
                             extra=['--cfg-options', 'train_cfg.max_epochs=3'])
    assert code == 0, out[-3000:]
    assert f'last_checkpoint names {gone}, which does not exist' in out
    assert 'resumed epoch: 1, iter: 6' in out, out[-3000:]
    assert iters == [7, 8, 9]


def test_resume_with_another_architecture_is_refused_before_a_step(
        trained, tmp_path):
    """``--resume`` with a wider encoder used to log size mismatches, resume
    and die in AdamW; it is refused before any step, naming the checkpoint
    and the first mismatched keys and shapes, also in the run's log file."""
    config, work = _copy(trained, tmp_path)
    code, out, iters = run_train_tool(config, work, resume=True, extra=[
        '--cfg-options', 'model.backbone.arch.embed_dims=64'])
    assert code != 0 and iters == []
    message = (f'resume: checkpoint {work / "iter_6.pth"} does not fit the '
               'model of this config')
    assert message in out, out[-3000:]
    assert 'backbone.cls_token: checkpoint (1, 1, 32) vs model (1, 1, 64)' \
        in out
    assert 'CheckpointMismatchError' in _log_files_text(work)


def test_load_from_with_mismatched_shapes_is_refused(trained, tmp_path):
    config, work = _copy(trained, tmp_path)
    checkpoint = trained[1] / 'iter_6.pth'
    code, out, iters = run_train_tool(config, tmp_path / 'new', extra=[
        '--cfg-options', f'load_from={checkpoint}',
        'model.backbone.arch.embed_dims=64'])
    assert code != 0 and iters == []
    assert f'load_from: checkpoint {checkpoint} does not fit' in out
    assert 'load_from_skip_mismatched=True' in out
    # the config saying it expects them: the mismatched tensors start from
    # their initialization (mmengine's behaviour) and the run trains
    code, out, iters = run_train_tool(config, tmp_path / 'skip', extra=[
        '--cfg-options', f'load_from={checkpoint}',
        'model.backbone.arch.embed_dims=64', 'load_from_skip_mismatched=1',
        'train_cfg.max_epochs=1', 'model.pixel_decoder.in_dims=64',
        'model.feature_decoder.in_dims=64'])
    assert code == 0, out[-3000:]
    assert 'size mismatch' in out and iters == [1, 2, 3]


def test_resume_with_a_new_lr_trains_with_it(trained, tmp_path):
    """The non-finite-loss advice (resume with a lower lr) works: the
    resumed run's lr is the checkpoint's schedule scaled by new / old, with
    a warning saying old -> new (it used to keep the checkpoint's lr)."""
    config, work = _copy(trained, tmp_path)
    first = _logged(work, 'lr')
    code, out, iters = run_train_tool(config, work, extra=[
        '--resume', str(work / 'iter_3.pth'), '--cfg-options',
        'optim_wrapper.optimizer.lr=0.001'])
    assert code == 0, out[-3000:]
    assert 'Resumed with a new base lr: 0.002 -> 0.001' in out
    assert iters == [4, 5, 6]
    again = _logged(work, 'lr')
    # iterations 4-6 are in the cosine part of the tiny schedule, eta_min
    # + (base - eta_min) * c(iteration): the new schedule has c of the old
    eta_min = 1e-5
    for it in (4, 5, 6):
        c = (first[it] - eta_min) / (2e-3 - eta_min)
        # python floats: equal but for the last bits
        assert again[it] == pytest.approx(eta_min + (1e-3 - eta_min) * c,
                                          rel=1e-12), it


# tools/train.py with os.fsync failing as on a full disk for the temporary
# checkpoint files only (the log and everything else are written)
_FULL_DISK = '''
import errno, os, runpy, sys
_fsync = os.fsync
def fsync(fd):
    if os.readlink(f'/proc/self/fd/{fd}').endswith('.tmp'):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    return _fsync(fd)
os.fsync = fsync
sys.argv = ['tools/train.py'] + sys.argv[1:]
runpy.run_path('tools/train.py', run_name='__main__')
'''


def test_full_disk_names_the_checkpoint_and_the_space(tmp_path):
    """A full disk during a save used to end in a bare ``OSError: [Errno
    28]``; the error names the checkpoint file and the space it needed, and
    reaches the run's log file."""
    config = write_tiny_demo_config(tmp_path / 'tiny.py', tmp_path / 'data',
                               num_workers=0, persistent=False, max_epochs=2,
                               ckpt_interval=2)
    work = tmp_path / 'work'
    proc = subprocess.run(
        [sys.executable, '-c', _FULL_DISK, config, '--work-dir', str(work)],
        cwd=REPO_ROOT, env=tool_env(), capture_output=True, text=True,
        timeout=300)
    assert proc.returncode != 0
    message = (f'No space left on the device to write {work / "iter_2.pth"}'
               ': it needs ')
    assert message in proc.stderr, proc.stderr[-3000:]
    assert 'MiB are free in' in proc.stderr
    assert message in _log_files_text(work)
    assert not list(work.glob('*.pth')) and not list(work.glob('.*.tmp'))


def test_non_finite_loss_reaches_the_log_file(tmp_path):
    """An lr of 1e30 blows the weights up after the first step: the
    non-finite-loss error ends the run and is in the run's log file, not
    only on the console."""
    config = write_tiny_demo_config(tmp_path / 'tiny.py', tmp_path / 'data',
                               num_workers=0, persistent=False, max_epochs=2,
                               ckpt_interval=100)
    work = tmp_path / 'work'
    code, out, iters = run_train_tool(config, work, extra=[
        '--cfg-options', 'optim_wrapper.optimizer.lr=1e30'])
    assert code != 0 and 'Non-finite loss at iteration' in out, out[-3000:]
    log = _log_files_text(work)
    assert 'The run stopped on this error' in log
    assert 'RuntimeError: Non-finite loss at iteration' in log
