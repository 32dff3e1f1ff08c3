"""PrefetchEpochBasedTrainLoop / BatchPrefetcher: the next batch is prepared
during the step; same batches, same order, same training, exact resume."""
import copy

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.registry import FUNCTIONS
from mmengine.runner import Runner
from mmpretrain.registry import DATASETS, MODELS

import bootmae_mm  # noqa: F401
from bootmae_mm.datasets.demo_pictures import make_demo_dataset
from bootmae_mm.feeding.prefetch_loop import BatchPrefetcher
from bootmae_mm.models.data_preprocessors import PreparedBatch
from helpers.demo_pretrain import (
    flatten_tensors,
    load_checkpoint,
    write_tiny_demo_config,
)

GPU_PIPELINE = [
    dict(type='LoadImageBytes'),
    dict(type='RandomResizedCropBox', scale=(0.4, 1.0)),
    dict(type='BootMAEMaskGenerator', img_size=32, patch_size=8,
         num_masking_patches=12, num_block_masking_patches=8,
         min_num_patches=2, max_num_patches=None, random_roll=True),
    dict(type='PackInputs', meta_keys=('img_path', 'crop_box', 'flip')),
]


@pytest.fixture(scope='module')
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp('demo')
    make_demo_dataset(str(root), num_train=2, num_val=1, img_size=32)
    return root


def _cfg(tmp_path, demo, gpu_decode, prefetch, work_dir):
    cfg = Config.fromfile(write_tiny_demo_config(
        tmp_path / 'tiny.py', demo, num_workers=0, persistent=False,
        max_epochs=3, ckpt_interval=4))
    cfg.work_dir = str(work_dir)
    if gpu_decode:
        cfg.train_dataloader.dataset.dataset.pipeline = GPU_PIPELINE
        cfg.train_dataloader.collate_fn = dict(type='mask_collate',
                                               inputs='list')
        cfg.model.data_preprocessor = dict(
            type='GPUDecodeDataPreprocessor', size=32, non_blocking=True)
    if prefetch:
        cfg.train_cfg.type = 'PrefetchEpochBasedTrainLoop'
    cfg.default_hooks.logger.interval = 1
    return cfg


class _StopAt(Hook):
    """Simulates a crash after iteration ``stop_at`` (1-based)."""

    def __init__(self, stop_at):
        self.stop_at = stop_at

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        if runner.iter + 1 == self.stop_at:
            raise KeyboardInterrupt('simulated crash')


def _train(cfg, stop_at=None, resume=False):
    cfg = copy.deepcopy(cfg)
    cfg.resume = resume
    runner = Runner.from_cfg(cfg)
    if stop_at is not None:
        runner.register_hook(_StopAt(stop_at), 'LOWEST')
        with pytest.raises(KeyboardInterrupt):
            runner.train()
    else:
        runner.train()
    return runner


def _losses(runner):
    return runner.message_hub.get_scalar('train/loss').data[0]


def test_prefetcher_yields_the_loader_batches_in_order(demo):
    """BatchPrefetcher over a real loader: batch for batch what calling the
    preprocessor on the loader's batches gives, whether the next batch is
    prepared early (during the 'step') or on demand."""
    dataset = DATASETS.build(dict(
        type='SeededDataset',
        dataset=dict(type='BootMAEDemoDataset', root=str(demo),
                     num_train=2, num_val=1, img_size=32,
                     pipeline=GPU_PIPELINE)))
    order = np.random.default_rng(0).permutation(len(dataset))
    sampler = [(int(i), 1000 + int(i)) for i in order]
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=4, sampler=sampler,
        collate_fn=lambda b: FUNCTIONS.get('mask_collate')(b, inputs='list'))
    pre = MODELS.build(dict(type='GPUDecodeDataPreprocessor', size=32))
    expected = [pre(batch, training=True) for batch in loader]
    assert len(expected) == 3
    for early in (True, False):
        prefetcher = BatchPrefetcher(loader, pre, torch.device('cpu'))
        got = []
        for batch in prefetcher:
            assert isinstance(batch, PreparedBatch)
            assert pre(batch) is batch  # passed through by the model
            if early:
                prefetcher.prepare_next()
            got.append(batch)
        assert len(got) == len(expected)
        for a, b in zip(got, expected):
            assert torch.equal(a['inputs'], b['inputs'])
            assert [s.img_path for s in a['data_samples']] == [
                s.img_path for s in b['data_samples']]
            for sa, sb in zip(a['data_samples'], b['data_samples']):
                assert torch.equal(sa.mask, sb.mask)
    # the crops differ between batches: the comparison means something
    assert not torch.equal(expected[0]['inputs'], expected[1]['inputs'])


@pytest.mark.parametrize('gpu_decode', [True, False],
                         ids=['gpu_decode', 'cpu_pipeline'])
def test_prefetch_loop_trains_as_plain_loop_and_resumes(
        tmp_path, demo, gpu_decode):
    """The tiny pretraining run (3 epochs of 3 iterations) with and without
    prefetching: the same losses at every iteration and bit-identical final
    weights, momentum target and optimizer state. Then a prefetching run
    that crashes at iteration 6 (after the mid-epoch checkpoint at 4, with
    batch 7 already prepared) and resumes ends identical too."""
    plain = _train(_cfg(tmp_path, demo, gpu_decode, False, tmp_path / 'a'))
    runner = _train(_cfg(tmp_path, demo, gpu_decode, True, tmp_path / 'b'))
    assert type(runner.train_loop).__name__ == \
        'PrefetchEpochBasedTrainLoop'
    assert len(_losses(plain)) == 9
    np.testing.assert_array_equal(_losses(runner), _losses(plain))
    ref = flatten_tensors(load_checkpoint(tmp_path / 'a' / 'iter_9.pth'))
    assert any(k.startswith('state_dict.target_encoder.') for k in ref)
    got = flatten_tensors(load_checkpoint(tmp_path / 'b' / 'iter_9.pth'))
    differ = [k for k in ref if not torch.equal(ref[k], got[k])]
    assert ref.keys() == got.keys() and not differ, differ[:5]

    cfg = _cfg(tmp_path, demo, gpu_decode, True, tmp_path / 'c')
    _train(cfg, stop_at=6)
    resumed = _train(cfg, resume=True)
    assert len(_losses(resumed)) == 9  # the message hub was restored
    np.testing.assert_array_equal(_losses(resumed), _losses(plain))
    got = flatten_tensors(load_checkpoint(tmp_path / 'c' / 'iter_9.pth'))
    differ = [k for k in ref if not torch.equal(ref[k], got[k])]
    assert ref.keys() == got.keys() and not differ, differ[:5]


def test_prefetch_loop_refuses_a_plain_preprocessor(tmp_path, demo):
    cfg = _cfg(tmp_path, demo, False, True, tmp_path / 'w')
    cfg.model.data_preprocessor.type = 'SelfSupDataPreprocessor'
    cfg.train_dataloader.collate_fn = dict(type='default_collate')
    with pytest.raises(TypeError, match='model.data_preprocessor.type'):
        Runner.from_cfg(cfg).train()


def test_pretraining_config_feeds_the_gpu():
    """configs/bootmae_vit-b_800e.py: prefetching loop, masks collated into
    one tensor for BootMAEDataPreprocessor, logged values read at the
    logging interval."""
    from mmengine.registry import HOOKS, LOOPS

    from helpers.repo import REPO_ROOT
    cfg = Config.fromfile(f'{REPO_ROOT}/configs/bootmae_vit-b_800e.py')
    assert cfg.train_cfg.type == 'PrefetchEpochBasedTrainLoop'
    assert cfg.train_dataloader.collate_fn.type == 'mask_collate'
    assert cfg.train_dataloader.pin_memory is True
    assert cfg.model.data_preprocessor.type == 'BootMAEDataPreprocessor'
    assert cfg.default_hooks.runtime_info.type == \
        'LogIntervalRuntimeInfoHook'
    from mmpretrain.registry import HOOKS as PRETRAIN_HOOKS
    from mmpretrain.registry import LOOPS as PRETRAIN_LOOPS
    for registry, name in ((PRETRAIN_LOOPS, cfg.train_cfg.type),
                           (FUNCTIONS, 'mask_collate'),
                           (PRETRAIN_HOOKS, 'LogIntervalRuntimeInfoHook'),
                           (MODELS, 'BootMAEDataPreprocessor')):
        assert registry.get(name) is not None, name
    # the plain versions stay available
    assert LOOPS.get('EpochBasedTrainLoop') is not None
    assert HOOKS.get('RuntimeInfoHook') is not None
