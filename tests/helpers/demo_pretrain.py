"""The demo pretraining config shrunk for the reliability tests (32 px
images, 4 x 4 patch grid, a 2-block 32-wide encoder, 12 demo pictures), and
helpers to run ``tools/train.py`` on it and read its checkpoints."""
import os
import os.path as osp
import re
import signal
import subprocess
import sys

import torch

from bootmae_mm.interop.checkpoint_files import safe_torch_load
from helpers.repo import REPO_ROOT, tool_env
from helpers.tiny_pretrain import TINY_MODEL_AND_PIPELINE

DEMO_CONFIG = osp.join(REPO_ROOT, 'configs', 'demo',
                       'bootmae_vit-tiny_demo.py')

TINY_DEMO_CONFIG = '''
_base_ = [{demo!r}]''' + TINY_MODEL_AND_PIPELINE + '''train_dataloader = dict(
    batch_size={batch_size},
    num_workers={num_workers},
    persistent_workers={persistent},
    sampler=dict(type='ResumableSampler', shuffle=True),
    dataset=dict(
        _delete_=True,
        type='SeededDataset',
        dataset=dict(type='BootMAEDemoDataset', root={data_root!r},
                     num_train=2, num_val=1, img_size=img_size,
                     pipeline=train_pipeline)))
max_epochs = {max_epochs}
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=True, begin=0, end=1,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=max_epochs - 1, eta_min=1e-5,
         by_epoch=True, begin=1, end=max_epochs, convert_to_iter_based=True),
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs)
custom_hooks = [
    dict(type='MomentumTargetHook', start=0.9, base=0.99, ramp_epochs=2),
    dict(type='FeatureWeightRampHook', ramp_fraction=0.5),
]
default_hooks = dict(
    logger=dict(interval=1),
    checkpoint=dict(by_epoch=False, interval={ckpt_interval},
                    max_keep_ckpts=2))
log_processor = dict(by_epoch=False)
env_cfg = dict(dist_cfg=dict(backend='gloo'))
'''


def write_tiny_demo_config(path, data_root, batch_size=4, num_workers=2,
                           persistent=True, max_epochs=5, ckpt_interval=4):
    """Write the shrunk demo config to ``path``; 12 pictures, so
    ``12 // batch_size`` iterations per epoch."""
    with open(path, 'w') as f:
        f.write(TINY_DEMO_CONFIG.format(
            demo=DEMO_CONFIG, data_root=str(data_root),
            batch_size=batch_size, num_workers=num_workers,
            persistent=persistent, max_epochs=max_epochs,
            ckpt_interval=ckpt_interval))
    return str(path)


ITER_LINE = re.compile(r'Iter\(train\) \[\s*(\d+)/(\d+)\]')


def run_train_tool(config, work_dir, resume=False, kill_at=None, extra=(),
                   launcher=None, timeout=300):
    """Run ``tools/train.py`` (or ``tools/dist_train.sh CONFIG N`` when
    ``launcher=N``); with ``kill_at``, SIGKILL its whole process group as
    soon as it logs that (1-based) iteration. Returns (returncode, output,
    logged iterations)."""
    if launcher:
        cmd = ['bash', 'tools/dist_train.sh', config, str(launcher)]
    else:
        cmd = [sys.executable, 'tools/train.py', config]
    cmd += ['--work-dir', str(work_dir)] + list(extra)
    if resume:
        cmd += ['--resume', 'auto']
    env = tool_env(dict(PYTHONUNBUFFERED='1', OMP_NUM_THREADS='1',
                        MKL_NUM_THREADS='1'))
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    lines, iters = [], []
    try:
        for line in proc.stdout:
            lines.append(line)
            match = ITER_LINE.search(line)
            if match:
                iters.append(int(match.group(1)))
                if kill_at is not None and iters[-1] >= kill_at:
                    os.killpg(proc.pid, signal.SIGKILL)
                    break
        proc.wait(timeout=timeout)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        proc.stdout.close()
    return proc.returncode, ''.join(lines), iters


def load_checkpoint(path):
    """A checkpoint read with the safe loader."""
    return safe_torch_load(str(path))


def flatten_tensors(tree, prefix=''):
    """Flatten the tensors of a (nested) state dict: {dotted key: tensor}."""
    out = {}
    if isinstance(tree, dict):
        for k, v in tree.items():
            out.update(flatten_tensors(v, f'{prefix}{k}.'))
    elif isinstance(tree, (list, tuple)):
        for i, v in enumerate(tree):
            out.update(flatten_tensors(v, f'{prefix}{i}.'))
    elif isinstance(tree, torch.Tensor):
        out[prefix[:-1]] = tree
    elif isinstance(tree, (int, float)):
        out[prefix[:-1]] = torch.tensor(tree)
    return out
