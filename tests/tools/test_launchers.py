"""tools/dist_train.sh, dist_test.sh and slurm_train.sh run the interpreter
named by ``$PYTHON`` (``python`` when unset)."""
import os

import pytest

from helpers.repo import run_tool

# a stand-in interpreter: records its arguments and stops (what the tools do
# with a real one is covered by tests/tools/test_tools.py)
_RECORDER = '''#!/usr/bin/env bash
echo "$@" > "{log}"
'''
# a stand-in srun (no Slurm here): drops its options (up to the command, an
# absolute path here) and runs the command once
_FAKE_SRUN = '''#!/usr/bin/env bash
while [[ "$1" != /* ]]; do shift; done
exec "$@"
'''


@pytest.mark.parametrize('script,args,runs', [
    ('tools/dist_train.sh', ['cfg.py', '2'], '-m torch.distributed.run'),
    ('tools/dist_test.sh', ['cfg.py', 'ckpt.pth', '2'],
     '-m torch.distributed.run'),
    ('tools/slurm_train.sh', ['part', 'job', 'cfg.py'], '-u tools/train.py'),
])
def test_launch_script_runs_the_named_python(tmp_path, script, args, runs):
    log = tmp_path / 'args.txt'
    python = tmp_path / 'my_python'
    python.write_text(_RECORDER.format(log=log))
    python.chmod(0o755)
    srun = tmp_path / 'srun'
    srun.write_text(_FAKE_SRUN)
    srun.chmod(0o755)
    env = dict(PYTHON=str(python),
               PATH=f'{tmp_path}{os.pathsep}{os.environ["PATH"]}')
    out = run_tool(['bash', script, *args], env=env, timeout=60)
    assert out.returncode == 0, out.stdout[-3000:]
    assert log.read_text().startswith(runs), log.read_text()
    assert 'cfg.py' in log.read_text()
