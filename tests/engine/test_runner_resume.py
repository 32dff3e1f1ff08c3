"""A classifier run of ``tools/train.py`` resumed with ``--resume`` (no
value: the newest checkpoint) on torch >= 2.6, whose ``torch.load``
defaults to ``weights_only=True`` (mmengine 0.10.7 alone fails there on its
own ``HistoryBuffer``): it continues from the checkpoint's iteration with
its loss history, optimizer state and lr schedule, and ends as a run never
interrupted."""
import pytest
import torch
from mmengine.logging.history_buffer import HistoryBuffer
from mmengine.runner import CheckpointLoader

import bootmae_mm  # noqa: F401
from helpers.classifier import tiny_classifier_train_cfg, write_config
from helpers.repo import run_tool


def _train(tmp_path, image_folder, name, max_iters, *args):
    work_dir = tmp_path / name
    config = write_config(
        tmp_path / f'{name}.py',
        tiny_classifier_train_cfg(
            image_folder, work_dir=work_dir, max_iters=max_iters,
            checkpoint_interval=2,
            param_scheduler=dict(type='LinearLR', start_factor=0.1,
                                 by_epoch=False, begin=0, end=4)))
    run = run_tool(['tools/train.py', config, *args])
    assert run.returncode == 0, run.stdout[-5000:]
    return work_dir, config, run.stdout


def _load(path):
    """As a resume reads a checkpoint (bootmae_mm's safe loader)."""
    return CheckpointLoader.load_checkpoint(str(path), map_location='cpu')


def _losses(ckpt):
    history = ckpt['message_hub']['log_scalars']['train/loss']
    assert isinstance(history, HistoryBuffer)
    return history.data[0].tolist()


def test_resume_continues_training(tmp_path, image_folder):
    assert torch.__version__ >= '2.6'  # torch.load defaults to weights_only
    work_dir, config, _ = _train(tmp_path, image_folder, 'work', 2)
    assert (work_dir / 'last_checkpoint').read_text().strip().endswith(
        'iter_2.pth')
    first = _load(work_dir / 'iter_2.pth')
    assert len(_losses(first)) == 2

    second = run_tool(['tools/train.py', config, '--resume',
                       '--cfg-options', 'train_cfg.max_iters=4'])
    assert second.returncode == 0, second.stdout[-5000:]
    log = second.stdout
    # the iteration counter continued from the checkpoint
    assert 'resumed epoch: 0, iter: 2' in log
    assert 'Iter(train) [3/4]' in log and 'Iter(train) [4/4]' in log
    assert 'Iter(train) [1/4]' not in log
    assert (work_dir / 'last_checkpoint').read_text().strip().endswith(
        'iter_4.pth')
    resumed = _load(work_dir / 'iter_4.pth')
    assert resumed['meta']['iter'] == 4
    # the message hub came back with the first run's loss history
    assert _losses(resumed)[:2] == pytest.approx(_losses(first))
    assert len(_losses(resumed)) == 4

    # the same weights, optimizer state (AdamW moments, step) and lr (the
    # LinearLR warm-up at step 4 of 4, not restarted) as 4 iterations in
    # one go
    straight_dir, _, _ = _train(tmp_path, image_folder, 'straight', 4)
    straight = _load(straight_dir / 'iter_4.pth')
    for name, value in straight['state_dict'].items():
        torch.testing.assert_close(resumed['state_dict'][name], value,
                                   msg=name)
    state, expected = (c['optimizer']['state'] for c in (resumed, straight))
    assert expected and state.keys() == expected.keys()
    for key, moments in expected.items():
        for name, value in moments.items():
            torch.testing.assert_close(state[key][name], value)
    lrs = [c['optimizer']['param_groups'][0]['lr']
           for c in (first, resumed, straight)]
    assert lrs[1] == pytest.approx(lrs[2]) and lrs[1] > lrs[0]
