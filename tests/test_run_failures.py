"""What a run of ``tools/train.py`` leaves and says when it is killed, given
a checkpoint of another model, or resumed with a new lr (docs/reliability.md,
"Killed runs" and "Resume")."""
import os
import signal
import subprocess
import sys
import time

from helpers import REPO_ROOT
from tiny_pretrain import DEMO_CONFIG, ITER_LINE, tool_env


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
