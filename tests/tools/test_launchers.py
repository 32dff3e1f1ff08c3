"""tools/dist_train.sh, dist_test.sh and slurm_train.sh run the interpreter
named by ``$PYTHON`` (``python`` when unset); tools/benchmark_gpu.sh runs
each GPU measurement and keeps its result."""
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


# a stand-in python3: prints its arguments as the one JSON line the
# benchmark tools print
_FAKE_PYTHON3 = '''#!/usr/bin/env bash
echo "{\\"argv\\": \\"$*\\"}"
'''


def test_benchmark_gpu_script_writes_one_file_per_measurement(tmp_path):
    """tools/benchmark_gpu.sh, run with a stand-in ``python3``: one JSON
    file per measurement with the arguments of docs/benchmarks.md, the log
    and nvidia-smi's output in ``--out``; ``--dry-run`` writes nothing."""
    python3 = tmp_path / 'bin' / 'python3'
    python3.parent.mkdir()
    python3.write_text(_FAKE_PYTHON3)
    python3.chmod(0o755)
    env = dict(PATH=f'{python3.parent}{os.pathsep}{os.environ["PATH"]}')
    out_dir = tmp_path / 'out'
    run = run_tool(['bash', 'tools/benchmark_gpu.sh', '--out', str(out_dir)],
                   env=env, timeout=60)
    assert run.returncode == 0, run.stdout[-3000:]
    steps = ['vit-b_bs256_bf16', 'vit-l_bs128_bf16',
             'vit-b_bs256_bf16_blocking', 'vit-b_bs256_bf16_compile',
             'vit-l_bs128_bf16_compile']
    assert sorted(p.name for p in out_dir.iterdir()) == sorted(
        [f'{s}.json' for s in steps] +
        ['data_gpu_decode.jsonl', 'log.txt', 'nvidia-smi.txt'])
    for name in steps:
        argv = (out_dir / f'{name}.json').read_text()
        assert 'tools/benchmark_pretrain.py configs/bootmae_vit-b_800e.py' \
            in argv and '--dtype bf16 --device cuda' in argv, argv
        assert ('--arch l' in argv) == name.startswith('vit-l')
        assert ('--batch-size 128' if name.startswith('vit-l') else
                '--batch-size 256') in argv
        assert ('--compile' in argv) == name.endswith('compile')
        assert ('non_blocking=False' in argv) == name.endswith('blocking')
    data = (out_dir / 'data_gpu_decode.jsonl').read_text()
    assert 'tools/benchmark_data.py' in data
    assert '--gpu-decode --device cuda' in data

    dry = run_tool(['bash', 'tools/benchmark_gpu.sh', '--dry-run', '--out',
                    str(tmp_path / 'dry')], env=env, timeout=60)
    assert dry.returncode == 0, dry.stdout[-3000:]
    assert dry.stdout.count('+ timeout ') == len(steps) + 1
    assert not (tmp_path / 'dry').exists()
    bad = run_tool(['bash', 'tools/benchmark_gpu.sh', '--devcie', 'cuda'],
                   env=env, timeout=60)
    assert bad.returncode == 2 and "unknown argument '--devcie'" in bad.stdout
