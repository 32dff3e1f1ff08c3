"""Exact resume (docs/reliability.md): a ``tools/train.py`` run SIGKILLed at
random iterations and resumed with ``--resume auto`` ends with bit-identical
weights, momentum target and optimizer state to a run never interrupted."""
import random
import subprocess
import sys

import numpy as np
import torch

from bootmae_mm.datasets import ResumableSampler, SeededDataset
from bootmae_mm.datasets.demo_pictures import make_demo_dataset
from helpers.demo_pretrain import (
    flatten_tensors,
    load_checkpoint,
    run_train_tool,
    write_tiny_demo_config,
)
from helpers.repo import REPO_ROOT


class _RandomDataset:
    """Returns what numpy, random and torch draw for a sample."""
    metainfo = {}

    def __len__(self):
        return 10

    def __getitem__(self, i):
        return i, np.random.rand(), random.random(), torch.rand(1).item()


def test_sampler_skips_and_seeds_by_position():
    dataset = SeededDataset(_RandomDataset())
    one = ResumableSampler(dataset, seed=3)
    one.set_epoch(2)
    full = list(one)
    assert sorted(i for i, _ in full) == list(range(10))
    # a resumed epoch continues with the same (index, seed) pairs
    one.skip(4)
    assert list(one) == full[4:]
    assert list(one) == full  # the skip applies to one iteration only
    # two ranks split the same global order, with the same seeds
    ranks = []
    for rank in range(2):
        s = ResumableSampler(dataset, seed=3)
        s.rank, s.world_size = rank, 2
        s.num_samples, s.total_size = 5, 10
        s.set_epoch(2)
        ranks.append(list(s))
    assert [p for pair in zip(*ranks) for p in pair] == full
    # the sample's randomness depends on its seed only, and the caller's
    # random states are left alone
    state = np.random.get_state()[1].copy()
    assert dataset[full[0]] == dataset[full[0]]
    assert dataset[full[0]] != dataset[(full[0][0], full[0][1] + 1)]
    assert (np.random.get_state()[1] == state).all()
    one.set_epoch(3)
    assert [s for _, s in one] != [s for _, s in full]


def test_killed_run_resumes_bit_exactly(tmp_path):
    rng = random.Random()
    make_demo_dataset(str(tmp_path / 'demo'), num_train=2, num_val=1,
                      img_size=32)
    # 12 pictures, batch 4: 3 iterations per epoch, 15 in all; checkpoints
    # at 4, 8 (mid-epoch), 12 (end of epoch 4) and 15
    config = write_tiny_demo_config(tmp_path / 'tiny.py', tmp_path / 'demo')
    total = 15
    # the uninterrupted run, alongside the interrupted one
    reference = subprocess.Popen(
        [sys.executable, '-c', 'import sys; sys.path.insert(0, "tests"); '
         'from helpers.demo_pretrain import run_train_tool; '
         f'rc, out, _ = run_train_tool({config!r}, '
         f'{str(tmp_path / "ref")!r}); '
         'print(out[-3000:]); sys.exit(rc)'],
        cwd=REPO_ROOT, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True)

    work = tmp_path / 'killed'
    kills = [rng.randint(5, 9)]
    kills.append(rng.randint(kills[0] + 2, total - 3))
    logged = []
    for i, kill_at in enumerate(kills):
        rc, out, iters = run_train_tool(config, work, resume=i > 0,
                                        kill_at=kill_at)
        assert rc == -9, f'kill at {kills}: rc {rc}\n{out[-3000:]}'
        logged.append(iters)
    rc, out, iters = run_train_tool(config, work, resume=True)
    assert rc == 0, f'kills at {kills}\n{out[-3000:]}'
    logged.append(iters)
    # the resumed runs started from a checkpoint, not from iteration 1
    assert logged[1][0] > 1 and logged[2][0] > 1, logged
    # every run after a kill replayed from the last checkpoint (<= the kill)
    assert logged[-1][-1] == total and logged[1][0] <= logged[0][-1] + 1
    assert logged[2][0] <= logged[1][-1] + 1

    ref_out = reference.communicate(timeout=400)[0]
    assert reference.returncode == 0, ref_out
    ref = load_checkpoint(tmp_path / 'ref' / f'iter_{total}.pth')
    got = load_checkpoint(work / f'iter_{total}.pth')
    for part in ('state_dict', 'optimizer', 'param_schedulers'):
        a, b = flatten_tensors(ref[part]), flatten_tensors(got[part])
        assert a.keys() == b.keys()
        differ = [k for k in a if not torch.equal(a[k], b[k])]
        assert not differ, (f'{part} differs after kills at {kills} '
                            f'(runs logged {logged}): {differ[:5]}')
    assert any(k.startswith('target_encoder.') for k in ref['state_dict'])
    assert ref['meta']['iter'] == got['meta']['iter'] == total
