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
            f'optim_wrapper = dict(paramwise_cfg=dict(_delete_=True, '
            f'**{paramwise!r}))\n')


BATCH = 4  # one process; 2 per rank with two ranks
ITERS = 6  # 12 pictures / 4 per step x 2 epochs
LR_SUM = 1e-4 + 5.5e-4 + 1e-3 + 1e-3 + 7.525e-4 + 2.575e-4  # logged lrs


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


def _is_key_bias(name):
    return name.endswith('attn.qkv.bias') and 'decoder' not in name


def _compare(ref, other):
    """Max relative difference over all tensors but the encoder's key biases
    (see the test), and the max absolute difference of those."""
    rel, key_bias = 0., 0.
    for name, a in ref.items():
        b = other[name]
        assert a.shape == b.shape, name
        diff = (a - b).abs()
        if _is_key_bias(name):
            third = a.numel() // 3
            key_bias = max(key_bias, float(diff[third:2 * third].max()))
            diff[third:2 * third] = 0
        rel = max(rel, float(diff.max() / a.abs().max().clamp(min=1e-12)))
    return rel, key_bias


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

    # the same weights after the same samples, to float tolerance; DDP
    # averages the ranks' gradients = the gradient of the global batch
    rel, key_bias = _compare(one['final'], ranks[0]['final'])
    print(f'{kind}: max relative difference {rel:.2e}, '
          f'key bias {key_bias:.2e}')
    assert rel < 1e-5
    # the key third of the encoder's qkv bias has no gradient (softmax is
    # invariant to it); AdamW turns the float noise of its ~0 gradient into
    # steps of up to lr, differently for a split batch. Bounded by sum(lr):
    assert key_bias < 2 * LR_SUM
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
