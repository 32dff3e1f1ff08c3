"""Momentum target and feature-weight ramp schedules, and their hooks in a
real mmengine Runner."""
import copy

import pytest
import torch
from mmengine.hooks import Hook
from mmengine.runner import Runner

import bootmae_mm  # noqa: F401
from bootmae_mm.engine.hooks.bootmae_schedule_hooks import (
    MomentumTargetHook,
    feature_weight_ramp,
    momentum_decay,
)
from helpers.bootmae import tiny_bootmae_runner_kwargs


# --------------------------------------------------------------- schedules
@pytest.mark.parametrize('epoch,expected', [
    (0, 0.999), (50, 0.99945), (100, 0.9999), (250, 0.9999 + 0.5 * 9e-5),
    (400, 0.99999), (799, 0.99999)])
def test_dynamic_momentum_schedule(epoch, expected):
    assert momentum_decay(epoch, dynamic=True) == pytest.approx(expected,
                                                                abs=1e-12)


@pytest.mark.parametrize('epoch,expected', [
    (0, 0.999), (50, 0.99945), (100, 0.9999), (250, 0.9999), (400, 0.9999),
    (799, 0.9999)])
def test_plain_momentum_schedule(epoch, expected):
    assert momentum_decay(epoch) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize('epoch,expected', [
    (0, 4 / 800), (50, 4 * 51 / 800), (100, 4 * 101 / 800), (199, 1.0),
    (250, 1.0), (400, 1.0), (799, 1.0)])
def test_feature_weight_ramp(epoch, expected):
    assert feature_weight_ramp(epoch, 800) == pytest.approx(expected)


@pytest.mark.parametrize('kwargs', [dict(start=1.0), dict(base=0.),
                                    dict(final=1.5)])
def test_decay_outside_unit_interval_is_refused(kwargs):
    key = next(iter(kwargs))
    with pytest.raises(ValueError, match=f'MomentumTargetHook.{key}'):
        MomentumTargetHook(**kwargs)


# ------------------------------------------------------------ hook in loop
class RecordTarget(Hook):
    """Snapshots (target, online) around every iteration, after the
    momentum hook has run."""
    priority = 'LOWEST'

    def __init__(self):
        self.before, self.after, self.online, self.ramp = [], [], [], []

    @staticmethod
    def _state(module):
        return {k: v.detach().clone() for k, v in module.state_dict().items()}

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        self.before.append(self._state(runner.model.target_encoder))
        self.ramp.append(runner.model.feature_ramp)

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        self.after.append(self._state(runner.model.target_encoder))
        self.online.append(self._state(runner.model.backbone))


def run(tmp_path, name, **kwargs):
    recorder = RecordTarget()
    cfg = tiny_bootmae_runner_kwargs(tmp_path / name, **kwargs)
    cfg['custom_hooks'] = cfg['custom_hooks'] + [recorder]
    runner = Runner(**cfg)
    runner.train()
    return runner, recorder


def test_target_moves_by_exactly_the_scheduled_decay(tmp_path):
    runner, rec = run(tmp_path, 'exact', max_epochs=2)
    # 8 images / batch 4 = 2 iterations per epoch; ramp_epochs=2:
    # decay 0.9 in epoch 0, 0.945 in epoch 1
    for it, decay in enumerate([0.9, 0.9, 0.945, 0.945]):
        for name, before in rec.before[it].items():
            expected = decay * before + (1 - decay) * rec.online[it][name]
            torch.testing.assert_close(rec.after[it][name], expected,
                                       rtol=1e-6, atol=1e-7)
    moved = rec.after[0]['layers.0.attn.qkv.weight'] - \
        rec.before[0]['layers.0.attn.qkv.weight']
    assert moved.abs().max() > 0
    logged = runner.message_hub.get_scalar('train/momentum').current()
    assert logged == pytest.approx(0.945)
    # feature ramp over a quarter of 2 epochs: min(1, (e + 1) / 0.5)
    assert rec.ramp == [1.0] * 4


def test_target_does_not_move_on_accumulation_only_steps(tmp_path):
    _, rec = run(tmp_path, 'accum', max_epochs=2, accumulative_counts=2)
    key = 'layers.0.attn.qkv.weight'
    changed = [not torch.equal(b[key], a[key])
               for b, a in zip(rec.before, rec.after)]
    assert changed == [False, True, False, True]


def test_resumed_run_ends_with_the_same_target(tmp_path):
    straight, _ = run(tmp_path, 'straight', max_epochs=3)
    first, _ = run(tmp_path, 'split', max_epochs=1)
    cfg = tiny_bootmae_runner_kwargs(tmp_path / 'split', max_epochs=3)
    cfg.update(resume=True)
    resumed = Runner(**cfg)
    resumed.train()
    assert resumed.iter == straight.iter == 6
    a = straight.model.state_dict()
    b = resumed.model.state_dict()
    for name in a:
        if name.startswith('target_encoder.'):
            torch.testing.assert_close(a[name], b[name], rtol=0, atol=0)
    assert not torch.equal(first.model.state_dict()[name], a[name])


def test_iteration_based_loop_needs_iters_per_epoch(tmp_path):
    cfg = tiny_bootmae_runner_kwargs(tmp_path / 'iter')
    cfg['train_cfg'] = dict(by_epoch=False, max_iters=2)
    cfg['train_dataloader']['sampler'] = dict(type='InfiniteSampler',
                                              shuffle=False)
    with pytest.raises(ValueError, match='iters_per_epoch'):
        Runner(**copy.deepcopy(cfg)).train()
    cfg['custom_hooks'] = [
        dict(type='MomentumTargetHook', start=0.9, base=0.99, ramp_epochs=2,
             iters_per_epoch=1),
        dict(type='FeatureWeightRampHook', iters_per_epoch=1)]
    runner = Runner(**cfg)
    runner.train()
    assert runner.message_hub.get_scalar('train/momentum').current() == \
        pytest.approx(0.945)


def test_loss_goes_down_on_a_fixed_batch(tmp_path):
    cfg = tiny_bootmae_runner_kwargs(tmp_path / 'fit', max_epochs=20,
                                     batch_size=8)
    cfg['optim_wrapper']['optimizer']['lr'] = 3e-3
    runner = Runner(**cfg)
    runner.train()
    hub = runner.message_hub
    pixel = hub.get_scalar('train/loss_pixel').data[0]
    feature = hub.get_scalar('train/loss_feature').data[0]
    assert len(pixel) == 20
    assert pixel[-1] < 0.9 * pixel[0]
    assert (pixel[-1] + feature[-1]) < pixel[0] + feature[0]
