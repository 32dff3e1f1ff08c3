"""tools/train.py, test.py, dist_train.sh, dist_test.sh and slurm_train.sh,
run as a user runs them."""
import glob
import json
import os
import os.path as osp
import re
import sys

import pytest

from helpers.classifier import tiny_classifier_train_cfg, write_config
from helpers.image_folder import make_image_folder
from helpers.repo import free_port, load_tool, run_tool

# A hook, imported by the config, that makes every rank write what it saw.
_RANK_PROBE = '''
import json
import os.path as osp

from mmengine.dist import get_rank, get_world_size
from mmengine.hooks import Hook
from mmengine.registry import HOOKS


@HOOKS.register_module()
class RankProbeHook(Hook):

    def __init__(self):
        self.seen = []

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        self.seen += [s.img_path for s in data_batch['data_samples']]

    def after_train(self, runner):
        params = sum(float(p.detach().double().sum())
                     for p in runner.model.parameters())
        path = osp.join(runner.work_dir, f'rank{get_rank()}.json')
        with open(path, 'w') as f:
            json.dump(dict(world_size=get_world_size(), seen=self.seen,
                           params=params,
                           wrapper=type(runner.model).__name__), f)
'''


# Slurm's srun and scontrol on one machine: srun starts --ntasks copies of
# the command with the SLURM_* variables a job step sets
_FAKE_SRUN = """#!/usr/bin/env bash
ntasks=1
while [[ $1 == -* ]]; do
    case $1 in --ntasks=*) ntasks=${1#--ntasks=} ;; -p) shift ;; esac
    shift
done
[[ $1 == python ]] && { shift; set -- PYTHON "$@"; }
pids=()
for ((i = 0; i < ntasks; i++)); do
    SLURM_PROCID=$i SLURM_LOCALID=$i SLURM_NTASKS=$ntasks \\
        SLURM_NODELIST=node0 "$@" &
    pids+=($!)
done
rc=0
for pid in "${pids[@]}"; do wait "$pid" || rc=$?; done
exit $rc
"""
_FAKE_SCONTROL = """#!/usr/bin/env bash
echo 127.0.0.1  # show hostname NODELIST: the first node
"""


def _fake_slurm(bin_dir):
    bin_dir.mkdir()
    for name, text in (('srun', _FAKE_SRUN.replace('PYTHON', sys.executable)),
                       ('scontrol', _FAKE_SCONTROL)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    return f'{bin_dir}{os.pathsep}{os.environ["PATH"]}'


@pytest.mark.parametrize('launcher', ['dist_train', 'slurm_train'])
def test_train_runs_two_gloo_ranks(tmp_path, launcher):
    """tools/dist_train.sh (torchrun) and tools/slurm_train.sh (through a
    stand-in srun: no Slurm here) start two real training processes."""
    (tmp_path / 'rank_probe.py').write_text(_RANK_PROBE)
    data_root = make_image_folder(tmp_path / 'data')
    work_dir = tmp_path / 'work'
    cfg = tiny_classifier_train_cfg(
        data_root, work_dir=work_dir, max_iters=2,
        custom_hooks=[dict(type='RankProbeHook')])
    cfg['custom_imports']['imports'].append('rank_probe')
    config = write_config(tmp_path / 'tiny_dist.py', cfg)

    env = dict(PYTHONPATH=str(tmp_path))
    if launcher == 'dist_train':
        args = ['tools/dist_train.sh', config, '2']
        env['PORT'] = str(free_port())
    else:
        args = ['tools/slurm_train.sh', 'cpu', 'tiny', config, str(work_dir)]
        env.update(GPUS='2', GPUS_PER_NODE='2', MASTER_PORT=str(free_port()),
                   PATH=_fake_slurm(tmp_path / 'bin'))
    out = run_tool(args, env=env)
    assert out.returncode == 0, out.stdout[-5000:]

    ranks = [json.loads((work_dir / f'rank{r}.json').read_text())
             for r in (0, 1)]
    for rank in ranks:
        assert rank['world_size'] == 2
        assert rank['wrapper'] == 'MMDistributedDataParallel'
        assert len(rank['seen']) == 4  # 2 iterations x batch 2
    # the distributed sampler split the data between the ranks ...
    assert not set(ranks[0]['seen']) & set(ranks[1]['seen'])
    # ... and DDP kept the weights in sync although the data differed
    assert abs(ranks[0]['params'] - ranks[1]['params']) < 1e-6
    log = glob.glob(str(work_dir / '*' / '*.log'))
    assert log, 'rank 0 wrote no log'
    text = open(log[0]).read()
    assert 'Distributed training: True' in text
    assert 'GPU number: 2' in text  # mmengine's name for the world size
    assert osp.isfile(work_dir / 'iter_2.pth')



def test_wrong_model_key_is_named(tmp_path, image_folder):
    cfg = tiny_classifier_train_cfg(image_folder, work_dir=tmp_path / 'work')
    cfg['model']['backbone']['archh'] = cfg['model']['backbone'].pop('arch')
    config = write_config(tmp_path / 'wrong_key.py', cfg)
    with pytest.raises(TypeError) as err:
        load_tool('tools/train.py').main([config])
    assert 'model.backbone.archh' in str(err.value)
    assert config in str(err.value)


def test_missing_dataset_path_is_named(tmp_path):
    missing = str(tmp_path / 'no_such_imagenet')
    cfg = tiny_classifier_train_cfg(missing, work_dir=tmp_path / 'work')
    config = write_config(tmp_path / 'missing_data.py', cfg)
    with pytest.raises(FileNotFoundError) as err:
        load_tool('tools/train.py').main([config])
    assert 'train_dataloader.dataset.data_root' in str(err.value)
    assert missing in str(err.value)
    assert not osp.exists(tmp_path / 'work'), 'failed only after building'
    # the same check through --cfg-options
    other = str(tmp_path / 'elsewhere')
    with pytest.raises(FileNotFoundError, match='elsewhere'):
        load_tool('tools/train.py').main([config, '--cfg-options',
                       f'train_dataloader.dataset.data_root={other}'])


def test_test_tool_evaluates_a_trained_checkpoint(tmp_path, image_folder):
    work_dir = tmp_path / 'work'
    test_loader = dict(
        batch_size=4, num_workers=0,
        sampler=dict(type='DefaultSampler', shuffle=False),
        dataset=dict(type='CustomDataset', data_root=str(image_folder),
                     pipeline=[dict(type='LoadImageFromFile'),
                               dict(type='PackInputs')]))
    config = write_config(
        tmp_path / 'tiny_test.py',
        tiny_classifier_train_cfg(
            image_folder, work_dir=work_dir, max_iters=2,
            test_dataloader=test_loader, test_cfg=dict(type='TestLoop'),
            test_evaluator=dict(type='Accuracy', topk=(1, ))))
    trained = run_tool(['tools/train.py', config])
    assert trained.returncode == 0, trained.stdout[-5000:]

    tested = run_tool(['tools/test.py', config, str(work_dir / 'iter_2.pth'),
                       '--work-dir', str(tmp_path / 'eval')])
    assert tested.returncode == 0, tested.stdout[-5000:]
    assert 'Load checkpoint from' in tested.stdout
    assert (tmp_path / 'eval').is_dir()
    single = re.findall(r'accuracy/top1: ([\d.]+)', tested.stdout)
    assert len(single) == 1, tested.stdout[-3000:]

    # two gloo ranks split the test set and gather one result
    dist = run_tool(['tools/dist_test.sh', config,
                     str(work_dir / 'iter_2.pth'), '2',
                     '--work-dir', str(tmp_path / 'eval2')],
                    env=dict(PORT=str(free_port())))
    assert dist.returncode == 0, dist.stdout[-5000:]
    assert 'Distributed launcher: pytorch' in dist.stdout
    assert re.findall(r'accuracy/top1: ([\d.]+)', dist.stdout) == single


def test_one_pretraining_step_runs_in_few_files_of_the_package(capsys):
    """tools/analysis/trace_step_files.py: iterations 3-6 of the production
    pretraining config (tiny encoder, generated images, fp32 on the CPU)
    run code in at most 16 files of bootmae_mm, each of them the method,
    its data, its schedule and reliability hooks or the prefetching
    loop (docs/architecture.md)."""
    tool = load_tool('tools/analysis/trace_step_files.py')
    tool.main([])
    lines = capsys.readouterr().out.splitlines()
    files = [line for line in lines if line.startswith('bootmae_mm/')]
    assert lines[-1].startswith(f'{len(files)} files of bootmae_mm')
    assert 10 <= len(files) <= 16, files
    assert 'bootmae_mm/models/algorithms/bootmae.py' in files
    rooms = {f.split('/')[1] for f in files}
    assert rooms == {'datasets', 'engine', 'feeding', 'models'}, files
