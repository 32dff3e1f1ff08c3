"""RepresentationMonitorHook in a real mmengine Runner on the shrunk demo
config: it logs k-NN and RankMe into the scalar log, and a broken bank or
an empty query set is refused naming the config key."""
import json

import pytest
from mmengine.config import Config
from mmengine.runner import Runner

import bootmae_mm  # noqa: F401
from bootmae_mm.config_errors import ConfigValueError
from bootmae_mm.evaluation import RepresentationMonitorHook
from helpers.demo_pretrain import write_tiny_demo_config
from helpers.monitor import folder_dataset

KEY = 'custom_hooks.RepresentationMonitorHook'


def runner_with_monitor(tmp_path, max_epochs=2, **monitor):
    """A Runner of the shrunk demo config (12 pictures, batch 4: 3
    iterations an epoch) with the monitor added."""
    path = write_tiny_demo_config(tmp_path / 'cfg.py', tmp_path / 'data',
                                  num_workers=0, persistent=False,
                                  max_epochs=max_epochs, ckpt_interval=100)
    cfg = Config.fromfile(path)
    cfg.custom_hooks.append(dict(type='RepresentationMonitorHook',
                                 **monitor))
    cfg.work_dir = str(tmp_path / 'work')
    cfg.env_cfg = dict(dist_cfg=dict(backend='gloo'))
    return Runner.from_cfg(cfg)


def scalar_records(runner):
    with open(f'{runner.log_dir}/vis_data/scalars.json') as f:
        return [json.loads(line) for line in f if line.strip()]


def test_monitor_logs_knn_and_rankme_during_training(tmp_path, monkeypatch):
    runner = runner_with_monitor(
        tmp_path, bank=dict(split='train'), query=dict(split='val'),
        interval=1, k=5)
    measured = []
    real_measure = RepresentationMonitorHook.measure

    def measure(self, *args, **kwargs):
        measured.append(real_measure(self, *args, **kwargs))
        return measured[-1]

    monkeypatch.setattr(RepresentationMonitorHook, 'measure', measure)
    runner.train()
    records = [r for r in scalar_records(runner) if 'knn/top1' in r]
    # before the first iteration, then after each of the 2 epochs
    assert [r['step'] for r in records] == [0, 3, 6]
    for r in records:
        assert 0 <= r['knn/top1'] <= r['knn/top5'] <= 100
        assert 1 <= r['rankme'] <= 12  # at most the 12 bank pictures
        assert r['monitor/time'] > 0
    # it measures the model as it trains: the embeddings change
    assert records[0]['rankme'] != records[-1]['rankme']
    # each measurement is logged, as measured
    assert [{k: r[k] for k in m} for r, m in zip(records, measured)] \
        == measured and len(measured) == 3
    # the training losses are logged as before, the model trains again
    assert any('loss_pixel' in r for r in scalar_records(runner))
    assert runner.model.training


def test_monitor_by_iterations_label_free(image_folder, tmp_path):
    """With no query set only RankMe is logged; the bank needs no labels."""
    runner = runner_with_monitor(
        tmp_path, interval=4, by_epoch=False, initial=False,
        # a dataloader config: its batch size is used
        bank=dict(batch_size=5, dataset=folder_dataset(image_folder,
                                                       with_label=False)))
    runner.train()
    records = [r for r in scalar_records(runner) if 'rankme' in r]
    assert [r['step'] for r in records] == [4, 6]  # and at the end
    assert 'knn/top1' not in records[0]
    assert 1 <= records[0]['rankme'] <= 16  # the 16 bank pictures
    hook, = [h for h in runner.hooks
             if isinstance(h, RepresentationMonitorHook)]
    assert hook.set_options['bank']['batch_size'] == 5


@pytest.mark.parametrize('name,monitor,message', [
    ('bank', dict(bank=dict(type='CustomDataset',
                            data_root='/nonexistent/bank'),
                  query=dict(split='val')), 'does not build'),
    ('bank', dict(bank=dict(split='test'), query=dict(split='val')),
     'does not build'),
    ('bank', dict(bank='data/demo', query=dict(split='val')),
     'a dataset or dataloader config'),
    ('query', dict(bank=dict(split='train'),
                   query=dict(split='val', indices=0,
                              serialize_data=False)), 'is empty'),
])
def test_bad_bank_or_query_is_refused_naming_the_key(tmp_path, name,
                                                     monitor, message):
    runner = runner_with_monitor(tmp_path, **monitor)
    with pytest.raises(ConfigValueError) as e:
        runner.train()
    assert f'{KEY}.{name}:' in str(e.value) and message in str(e.value)
    assert runner.iter == 0  # refused before training


def test_unlabelled_bank_is_refused_for_knn(image_folder, tmp_path):
    runner = runner_with_monitor(
        tmp_path, bank=folder_dataset(image_folder, with_label=False),
        query=folder_dataset(image_folder))
    with pytest.raises(ConfigValueError, match=f'{KEY}.bank: its samples '
                       'have no label'):
        runner.train()


def test_bad_settings_are_refused_naming_the_key():
    with pytest.raises(ConfigValueError, match=f"{KEY}.pooling='max'"):
        RepresentationMonitorHook(bank={}, pooling='max')
    with pytest.raises(ConfigValueError, match=f"{KEY}.encoder='ema'"):
        RepresentationMonitorHook(bank={}, encoder='ema')
