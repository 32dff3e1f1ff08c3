"""Resume with the real mmengine Runner on torch >= 2.6, whose ``torch.load``
defaults to ``weights_only=True``: mmengine 0.10.7 alone fails on its own
``HistoryBuffer``; with ``bootmae_mm`` imported it resumes."""
import os.path as osp

import pytest
import torch
from mmengine.hooks import Hook
from mmengine.logging.history_buffer import HistoryBuffer
from mmengine.runner import Runner

import bootmae_mm  # noqa: F401
from bootmae_mm.interop.checkpoint_files import safe_torch_load
from helpers.classifier import tiny_classifier_train_cfg
from helpers.image_folder import make_image_folder


class _Probe(Hook):
    """Records what the runner looks like when training (re)starts."""

    def __init__(self):
        self.start = None
        self.iters = []

    def before_train(self, runner):
        optim = runner.optim_wrapper.optimizer
        loss = runner.message_hub.log_scalars.get('train/loss')
        self.start = dict(
            iter=runner.iter,
            losses=None if loss is None else loss.data[0].tolist(),
            optim_state={k: {n: v.clone() for n, v in s.items()}
                         for k, s in optim.state_dict()['state'].items()},
            lr=optim.param_groups[0]['lr'])

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        self.iters.append(runner.iter)


def _runner(work_dir, data_root, max_iters, name, resume=False):
    cfg = tiny_classifier_train_cfg(
        data_root, work_dir=work_dir, max_iters=max_iters,
        checkpoint_interval=2, experiment_name=name, resume=resume,
        param_scheduler=dict(type='LinearLR', start_factor=0.1,
                             by_epoch=False, begin=0, end=4))
    probe = _Probe()
    cfg['custom_hooks'] = [probe]
    cfg.pop('custom_imports')
    return Runner(**cfg), probe  # (from_cfg would dump the hook object)


def test_resume_continues_training(tmp_path):
    assert torch.__version__ >= '2.6'  # torch.load defaults to weights_only
    data_root = make_image_folder(tmp_path / 'data')
    work_dir = str(tmp_path / 'work')

    first, probe1 = _runner(work_dir, data_root, 2, 'resume_first')
    first.train()
    assert probe1.iters == [0, 1]
    ckpt_path = osp.join(work_dir, 'iter_2.pth')
    ckpt = safe_torch_load(ckpt_path)
    assert isinstance(ckpt['message_hub']['log_scalars']['train/loss'],
                      HistoryBuffer)
    saved_losses = ckpt['message_hub']['log_scalars']['train/loss'] \
        ._log_history.tolist()
    assert len(saved_losses) == 2

    second, probe2 = _runner(work_dir, data_root, 4, 'resume_second',
                             resume=True)
    second.train()
    start = probe2.start
    # the iteration counter continued from the checkpoint
    assert start['iter'] == 2
    assert probe2.iters == [2, 3]
    # the message hub came back with the first run's loss history
    assert start['losses'] == pytest.approx(saved_losses)
    # the optimizer state (AdamW moments, step) came back
    saved_state = ckpt['optimizer']['state']
    assert saved_state and start['optim_state'].keys() == saved_state.keys()
    for key, state in saved_state.items():
        for name, value in state.items():
            torch.testing.assert_close(start['optim_state'][key][name], value)
    # the lr schedule continued (LinearLR at step 2 of 4, not step 0)
    assert start['lr'] == pytest.approx(ckpt['optimizer']['param_groups'][0]
                                        ['lr'])
    assert start['lr'] > 1e-3 * 0.1 + 1e-9
    # and it ran to the end
    assert second.iter == 4
    assert osp.isfile(osp.join(work_dir, 'iter_4.pth'))
    final = safe_torch_load(osp.join(work_dir, 'iter_4.pth'))
    assert final['meta']['iter'] == 4
    assert len(final['message_hub']['log_scalars']['train/loss']
               ._log_history) == 4

    # resuming gives the same weights as training 4 iterations in one go
    straight, _ = _runner(str(tmp_path / 'straight'), data_root, 4,
                          'resume_straight')
    straight.train()
    for (name, p), q in zip(second.model.state_dict().items(),
                            straight.model.state_dict().values()):
        torch.testing.assert_close(p, q, msg=name)
