"""Distributed pretraining on CPU: ``tools/dist_train.sh CONFIG 2`` (gloo)
with DDP and with FSDP (FlexibleRunner) trains the tiny BootMAE config like
one process with the doubled batch, and keeps the momentum target identical
on every rank."""
import os.path as osp

import pytest
import torch
from mmengine.config import Config

from helpers.demo_pretrain import (
    load_checkpoint,
    run_train_tool,
    write_tiny_demo_config,
)
from helpers.repo import REPO_ROOT, free_port

# Imported by the configs (custom_imports): every rank records the samples
# of each batch (path, pixel sum, mask) and, at the start and the end, the
# full online weights and the momentum target (FSDP: gathered).
_PROBE = '''
import os.path as osp

import torch
from mmengine.dist import get_rank, get_world_size
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS
from torch.distributed.fsdp import FullyShardedDataParallel as FSDP


def _weights(runner):
    model = runner.model
    inner = model.module if is_model_wrapper(model) else model

    def grab():
        out = {'target_encoder.' + k: v.detach().clone()
               for k, v in inner.target_encoder.named_buffers()}
        out.update({k.replace('_fsdp_wrapped_module.', ''): v.detach().clone()
                    for k, v in inner.named_parameters()})
        return out

    if isinstance(model, FSDP):
        with FSDP.summon_full_params(model, writeback=False):
            return grab()
    return grab()


@HOOKS.register_module()
class DistProbeHook(Hook):
    priority = 'LOWEST'

    def __init__(self):
        self.batches = []

    def before_train(self, runner):
        self.initial = _weights(runner)

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        # mask_collate stacks the masks into data_batch['masks']
        masks = data_batch.get('masks')
        if masks is None:
            masks = [s.mask for s in data_batch['data_samples']]
        self.batches.append([
            (s.img_path, int(img.long().sum()), m.flatten().tolist())
            for img, s, m in zip(data_batch['inputs'],
                                 data_batch['data_samples'], masks)])

    def after_train(self, runner):
        torch.save(dict(world_size=get_world_size(), batches=self.batches,
                        initial=self.initial, final=_weights(runner),
                        wrapper=type(runner.model).__name__),
                   osp.join(runner.work_dir, f'probe_rank{get_rank()}.pth'))
'''

_EXTRA = '''
custom_imports = dict(imports=['bootmae_mm', 'dist_probe'])
custom_hooks = [
    dict(type='MomentumTargetHook', start=0.9, base=0.99, ramp_epochs=2),
    dict(type='FeatureWeightRampHook', ramp_fraction=0.5),
    dict(type='DistProbeHook'),
]
# plain SGD: the update is lr x gradient, so a rounding difference in the
# gradient reaches the weights unamplified (AdamW divides by sqrt(v) and
# turns the float noise of a ~0 gradient into a step of up to lr)
optim_wrapper = dict(optimizer=dict(
    _delete_=True, type='SGD', lr=0.05, momentum=0., weight_decay=0.05))
'''



def _fsdp_settings():
    """configs/bootmae_vit-l_800e_fsdp.py's strategy and weight-decay
    rules, with device_id='cpu' (FSDP refuses to pick a device on a machine
    without an accelerator)."""
    cfg = Config.fromfile(osp.join(REPO_ROOT, 'configs',
                                   'bootmae_vit-l_800e_fsdp.py'))
    strategy = cfg.strategy.to_dict()
    strategy['model_wrapper']['device_id'] = 'cpu'
    paramwise = cfg.optim_wrapper.paramwise_cfg.to_dict()
    return (f'\nstrategy = {strategy!r}\n'
            f'optim_wrapper.update(paramwise_cfg=dict(_delete_=True, '
            f'**{paramwise!r}))\n')


BATCH = 4  # one process; 2 per rank with two ranks
ITERS = 6  # 12 pictures / 4 per step x 2 epochs
DEPTH, TERMS, ROUNDINGS = 30, 128, 4  # see _rounding_bound


def _run(tmp_path, env, name, ranks, strategy=''):
    config = tmp_path / f'{name}.py'
    write_tiny_demo_config(config, tmp_path / 'data', batch_size=BATCH,
                           num_workers=0, persistent=False, max_epochs=2,
                           ckpt_interval=ITERS)
    config.write_text(config.read_text() + _EXTRA + strategy)
    work_dir = tmp_path / name
    extra = []
    if ranks > 1:
        extra = ['--cfg-options',
                 f'train_dataloader.batch_size={BATCH // ranks}']
    env.setenv('PORT', str(free_port()))  # read by tools/dist_train.sh
    code, out, iters = run_train_tool(str(config), work_dir, extra=extra,
                                      launcher=ranks if ranks > 1 else None)
    assert code == 0, out[-5000:]
    assert iters[-1] == ITERS, out[-3000:]
    probes = [torch.load(work_dir / f'probe_rank{r}.pth', weights_only=False)
              for r in range(ranks)]
    # every checkpoint was renamed into place (FSDP too): no partial files
    assert not list(work_dir.glob('.*.tmp'))
    assert (work_dir / 'last_checkpoint').read_text().strip() == str(
        work_dir / f'iter_{ITERS}.pth')
    return probes, load_checkpoint(work_dir / f'iter_{ITERS}.pth')


@pytest.fixture(scope='module')
def runs(tmp_path_factory, monkeypatch_module):
    tmp_path = tmp_path_factory.mktemp('dist')
    (tmp_path / 'dist_probe.py').write_text(_PROBE)
    monkeypatch_module.setenv('PYTHONPATH', str(tmp_path))
    # one process first: it also draws the demo pictures
    env = monkeypatch_module
    return dict(one=_run(tmp_path, env, 'one', 1),
                ddp=_run(tmp_path, env, 'ddp', 2),
                fsdp=_run(tmp_path, env, 'fsdp', 2, _fsdp_settings()))


@pytest.fixture(scope='module')
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as mp:
        yield mp


def _rounding_bound(start, final):
    """How far two float32 runs that differ only in summation order (batch
    split, all-reduce, thread count, SIMD width) may end apart, per tensor.

    - The gradient: every element is a chain of at most ``DEPTH`` float32
      operations (forward and backward through 2 encoder blocks and a
      decoder block), each a sum of at most ``TERMS`` products (the widest
      reduction: the 64-wide MLP / 4 images x 17 tokens, rounded up to
      128). The standard worst-case bound of a sum of ``n`` terms is
      ``n * eps`` of the sum of their magnitudes, so the relative gradient
      error is at most ``DEPTH * TERMS * eps``; SGD moves a weight by
      ``lr x gradient``, so that fraction of the total update ``|final -
      start|`` (no amplification: this is why the test uses SGD, not AdamW).
    - The values: each step rounds every weight to float32 (the SGD update
      and its weight decay, then the EMA of the momentum target): at most
      ``ROUNDINGS`` half-ulps per step, which two runs can land on
      opposite sides of, of the tensor's largest magnitude.
    """
    moved = (final - start).abs().max()
    scale = torch.maximum(final.abs().max(), start.abs().max())
    eps = torch.finfo(torch.float32).eps
    return (DEPTH * TERMS * eps * moved +
            ROUNDINGS * ITERS * eps * scale)


def _worst_difference(initial, ref, other):
    """Max over tensors of max|ref - other| / its rounding bound, and the
    tensor where it is largest."""
    worst, where = 0., None
    for name, start in initial.items():
        diff = float((ref[name] - other[name]).abs().max())
        if 'pos_embed' in name:  # fixed: must not move at all
            assert torch.equal(ref[name], start), name
            assert diff == 0, name
            continue
        ratio = diff / float(_rounding_bound(start, ref[name]))
        if ratio > worst:
            worst, where = ratio, name
    return worst, where


@pytest.mark.parametrize('kind, wrapper', [
    ('ddp', 'MMDistributedDataParallel'),
    ('fsdp', 'MMFullyShardedDataParallel')])
def test_two_ranks_match_one_process_with_doubled_batch(runs, kind, wrapper):
    (one,), one_ckpt = runs['one']
    ranks, ckpt = runs[kind]
    assert [p['world_size'] for p in ranks] == [2, 2]
    assert {p['wrapper'] for p in ranks} == {wrapper}
    assert one['world_size'] == 1

    # the same global batches: rank r takes every other index of the global
    # order, so the two batches of 2 together are the one-process batch of
    # 4, with the same pictures, crops (pixel sums) and masks
    assert len(one['batches']) == ITERS
    for step, batch in enumerate(one['batches']):
        together = ranks[0]['batches'][step] + ranks[1]['batches'][step]
        assert len(ranks[0]['batches'][step]) == BATCH // 2
        assert sorted(together) == sorted(batch), f'step {step + 1}'
    # every image masks the same number of patches (12 of 16)
    assert {sum(s[2]) for b in one['batches'] for s in b} == {12}

    # the same start (rank 0's initialization, broadcast)
    for probe in ranks:
        for name, tensor in one['initial'].items():
            assert torch.equal(tensor, probe['initial'][name]), name

    # the same weights after the same samples, to float rounding: DDP
    # averages the ranks' gradients = the gradient of the global batch
    ratio, where = _worst_difference(one['initial'], one['final'],
                                     ranks[0]['final'])
    print(f'{kind}: max difference / rounding bound {ratio:.2e} ({where})')
    assert ratio <= 1, where
    assert len(one['final']) > 100

    # the momentum target and the online weights are identical on the ranks
    for name, tensor in ranks[0]['final'].items():
        assert torch.equal(tensor, ranks[1]['final'][name]), name
    # the target moved everywhere (no tensor left out of the EMA update)
    target = [n for n in one['final'] if n.startswith('target_encoder.')
              and 'pos_embed' not in n]
    assert len(target) > 20
    for name in target:
        assert not torch.equal(ranks[0]['final'][name],
                               ranks[0]['initial'][name]), name
    # rank 0's checkpoint: an ordinary state dict (no FSDP names) holding
    # that target
    state = ckpt['state_dict']
    assert set(state) == set(one_ckpt['state_dict'])
    for name in target:
        assert torch.equal(state[name], ranks[1]['final'][name]), name


@pytest.mark.parametrize('name, arch, grid, masked, dims', [
    ('bootmae_vit-l_800e_fsdp.py', 'l', 14, 147, 1024),
    ('bootmae_vit-h_800e_fsdp.py', 'h', 16, 192, 1280)])
def test_fsdp_configs_build(name, arch, grid, masked, dims):
    """The ViT-L/H FSDP configs load and build their full-size model (on the
    meta device: shapes only), and the wrap policy makes one FSDP unit of
    every online block and none of the momentum target's."""
    from mmpretrain.registry import MODELS, TRANSFORMS

    from bootmae_mm.engine.fsdp_wrap_policy import bootmae_block_wrap_policy
    cfg = Config.fromfile(osp.join(REPO_ROOT, 'configs', name))
    assert cfg.strategy.type == 'AtomicFSDPStrategy'
    assert cfg.strategy.model_wrapper.use_orig_params is True
    assert cfg.strategy.model_wrapper.auto_wrap_policy == \
        'bootmae_block_wrap_policy'
    mask_cfg = cfg.train_dataloader.dataset.dataset.pipeline[3]
    assert mask_cfg.num_masking_patches == masked == \
        cfg.model.num_masking_patches
    with torch.device('meta'):
        model = MODELS.build(cfg.model)
    assert model.backbone.arch_settings['embed_dims'] == dims
    assert model.backbone.patch_resolution == (grid, grid)
    assert model.pixel_decoder.patch_resolution == (grid, grid)
    assert model.feature_decoder.patch_resolution == (grid, grid)
    mask = TRANSFORMS.build(mask_cfg).transform({})['mask']
    assert mask.shape == (grid, grid) and mask.sum() == masked
    wrapped = [n for n, m in model.named_modules()
               if bootmae_block_wrap_policy(
                   m, False, sum(p.numel() for p in m.parameters()))]
    encoder_layers = len(model.backbone.layers)
    assert len(wrapped) == encoder_layers + 4  # + 2 blocks per decoder
    assert not [n for n in wrapped if n.startswith('target_encoder')]
    assert encoder_layers == {'l': 24, 'h': 32}[arch]
