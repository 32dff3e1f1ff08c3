"""The step's speed switches change how it runs, not what it computes.

Each optimized step (activation checkpointing, fused AdamW, the one-kernel
momentum update, torch.compile) is compared with a plain eager fp32 step
(no checkpointing, for-loop AdamW, the momentum formula written out) on the
same weights, images and masks: same losses (1e-5 relative), same gradients,
same parameters and momentum target afterwards.
"""
import copy
import json

import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmpretrain.registry import MODELS

import bootmae_mm  # noqa: F401
from helpers.bootmae import (
    data_samples_with_masks,
    random_patch_mask,
    tiny_bootmae_cfg,
)
from helpers.tiny_pretrain import PRETRAIN_CONFIG

DECAY = 0.9
LR = 1e-3


def _model_cfg(with_cp=False, compile=False):
    cfg = copy.deepcopy(tiny_bootmae_cfg(compile=compile))
    cfg['backbone']['with_cp'] = with_cp
    return cfg


def _optim_cfg(fused):
    """The pretraining schedule's optimizer (fp32 wrapper on the CPU)."""
    cfg = copy.deepcopy(Config.fromfile(PRETRAIN_CONFIG).optim_wrapper)
    cfg.type = 'OptimWrapper'
    for key in ('dtype', 'loss_scale'):
        cfg.pop(key)
    cfg.optimizer.update(lr=LR, fused=fused)
    if not fused:
        cfg.optimizer.foreach = False  # the plain per-tensor loop
    return cfg


def _batches(n=2, batch=4):
    g = torch.Generator().manual_seed(1)
    return [dict(inputs=torch.randint(0, 256, (batch, 3, 32, 32),
                                      dtype=torch.uint8, generator=g),
                 data_samples=data_samples_with_masks(
                     [random_patch_mask(g) for _ in range(batch)]))
            for _ in range(n)]


def _plain_momentum_update(model, decay):
    """The formula, one tensor at a time."""
    online = dict(model.backbone.named_parameters())
    with torch.no_grad():
        for name, buf in model.target_encoder.named_buffers():
            if name in online and online[name].requires_grad:
                buf.copy_(decay * buf + (1 - decay) * online[name])


def _run(model, optim_wrapper, batches, fused_momentum=True):
    """``train_step`` split open so that the gradients can be read: the
    data preprocessor, losses, backward, optimizer step, momentum update."""
    history = []
    for data in batches:
        data = model.data_preprocessor(data, True)
        losses = model(**data, mode='loss')
        loss, log_vars = model.parse_losses(losses)
        optim_wrapper.backward(loss)
        grads = {n: p.grad.clone() for n, p in model.named_parameters()
                 if p.grad is not None}
        optim_wrapper.step()
        optim_wrapper.zero_grad()
        if fused_momentum:
            model.update_target(DECAY)
        else:
            _plain_momentum_update(model, DECAY)
        history.append((log_vars, grads))
    return history, copy.deepcopy(model.state_dict())


def _build_pair(**switches):
    torch.manual_seed(0)
    plain = MODELS.build(_model_cfg())
    plain.init_weights()
    fast = MODELS.build(_model_cfg(**switches))
    fast.load_state_dict(plain.state_dict())
    return plain.train(), fast.train()


def _assert_close(a, b, what, rtol=1e-5):
    scale = b.abs().max().clamp_min(1e-12)
    err = (a - b).abs().max() / scale
    assert err <= rtol, f'{what}: relative difference {err:.2e}'


def _compare(plain_run, fast_run):
    (plain_hist, plain_state), (fast_hist, fast_state) = plain_run, fast_run
    for (p_logs, p_grads), (f_logs, f_grads) in zip(plain_hist, fast_hist):
        for key in ('loss', 'loss_pixel', 'loss_feature'):
            _assert_close(f_logs[key].detach(), p_logs[key].detach(), key)
        assert p_grads.keys() == f_grads.keys()
        for name in p_grads:
            _assert_close(f_grads[name], p_grads[name], f'grad of {name}',
                          rtol=1e-4)
    # parameters and momentum target after 2 steps agree to 1e-5 / 1e-4
    # (the key bias stays exactly zero in both: its gradient is masked).
    # Any element whose gradient, at some step, is below what the two runs'
    # gradients agree on (1e-4 of the tensor's largest) is the exception:
    # Adam divides by the gradient's own size and turns that noise into an
    # update of up to lr, so those elements (and their momentum average)
    # may differ by up to lr per step.
    undetermined = {}
    for _, grads in plain_hist:
        for name, grad in grads.items():
            small = grad.abs() <= 1e-4 * grad.abs().max()
            undetermined[name] = undetermined.get(name, small) | small
    bound = LR * len(plain_hist)
    assert plain_state.keys() == fast_state.keys()
    for name in plain_state:
        fast, plain = fast_state[name], plain_state[name]
        keep = torch.ones_like(plain, dtype=torch.bool)
        # the momentum target follows the online encoder's elements
        online = name.replace('target_encoder.', 'backbone.', 1)
        if online in undetermined:
            noisy = undetermined[online]
            assert ((fast - plain).abs()[noisy] <= bound).all(), name
            keep &= ~noisy
        torch.testing.assert_close(fast[keep], plain[keep], rtol=1e-5,
                                   atol=1e-4,
                                   msg=lambda m, n=name: f'{n}: {m}')


@pytest.mark.parametrize('with_cp', [False, True])
def test_optimized_step_equals_plain_eager_step(with_cp):
    plain, fast = _build_pair(with_cp=with_cp)
    assert fast.backbone.with_cp is with_cp
    assert not fast.target_encoder.with_cp  # no grads there: never
    batches = _batches()
    plain_run = _run(plain, build_optim_wrapper(plain, _optim_cfg(False)),
                     batches, fused_momentum=False)
    fast_wrapper = build_optim_wrapper(fast, _optim_cfg(True))
    assert fast_wrapper.optimizer.defaults['fused'] is True
    _compare(plain_run, _run(fast, fast_wrapper, batches))


@pytest.mark.parametrize('backend', ['aot_eager', 'inductor'])
def test_compiled_step_equals_plain_eager_step(backend):
    """The compiled tensor part is one graph (``fullgraph``: no graph break,
    so no host sync inside) and computes what the eager step computes.
    ``aot_eager`` traces forward and backward; ``inductor`` (the default
    backend, what ``model.compile=True`` uses) also generates the kernels:
    C++ here (about 100 s on two cores, then cached), Triton on GPUs."""
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    plain, fast = _build_pair(
        compile=dict(backend=backend, fullgraph=True, dynamic=False))
    batches = _batches()
    plain_run = _run(plain, build_optim_wrapper(plain, _optim_cfg(False)),
                     batches, fused_momentum=False)
    _compare(plain_run,
             _run(fast, build_optim_wrapper(fast, _optim_cfg(True)), batches))
    # the step ran compiled: one graph
    assert torch._dynamo.utils.counters['stats']['unique_graphs'] == 1
    torch._dynamo.reset()


def test_momentum_update_equals_formula_after_moving_the_model():
    torch.manual_seed(0)
    model = MODELS.build(_model_cfg())
    with torch.no_grad():  # a target that differs from the online encoder
        for buf in model.target_encoder.buffers():
            buf.normal_()
    reference = copy.deepcopy(model)
    model.update_target(0.5)  # fp32; pairs are cached on first use ...
    _plain_momentum_update(reference, 0.5)
    for buf, expected in zip(model.target_encoder.buffers(),
                             reference.target_encoder.buffers()):
        torch.testing.assert_close(buf, expected, rtol=1e-6, atol=1e-7)
    model.to(torch.float64)  # ... and .to() replaces every buffer
    reference = copy.deepcopy(model)
    start = {n: b.clone() for n, b in model.target_encoder.named_buffers()}
    for decay in (0.999, 0.99999):
        model.update_target(decay)
        _plain_momentum_update(reference, decay)
    online = dict(model.backbone.named_parameters())
    moved = 0
    for name, buf in model.target_encoder.named_buffers():
        expected = dict(reference.target_encoder.named_buffers())[name]
        torch.testing.assert_close(buf, expected, rtol=1e-12, atol=1e-12)
        if name in online and online[name].requires_grad:
            moved += 1
    assert moved > 0
    # the trained cls_token is averaged; the fixed position embedding is
    # not trained, so not averaged
    target = dict(model.target_encoder.named_buffers())
    assert not torch.equal(target['cls_token'], start['cls_token'])
    assert torch.equal(target['pos_embed'], start['pos_embed'])


def test_attention_is_fused_everywhere(monkeypatch):
    """Encoder (mmpretrain's MultiheadAttention) and both decoders (self-
    and cross-attention) call torch's scaled_dot_product_attention."""
    model = MODELS.build(_model_cfg())
    for layer in list(model.backbone.layers) + \
            list(model.target_encoder.layers):
        assert layer.attn.scaled_dot_product_attention is \
            F.scaled_dot_product_attention
    calls = []
    sdpa = F.scaled_dot_product_attention

    def counting(*args, **kwargs):
        calls.append(args[0].shape)
        return sdpa(*args, **kwargs)

    monkeypatch.setattr(F, 'scaled_dot_product_attention', counting)
    data = model.data_preprocessor(_batches(1)[0], True)
    model(**data, mode='loss')
    depth = len(model.pixel_decoder.decoder_blocks) + \
        len(model.feature_decoder.decoder_blocks)
    assert len(calls) == 2 * depth  # self + cross attention per block


def test_every_switch_is_in_the_config_and_can_be_turned_off():
    cfg = Config.fromfile(PRETRAIN_CONFIG)
    assert cfg.optim_wrapper.dtype == 'bfloat16'
    assert cfg.optim_wrapper.loss_scale == dict(enabled=False)
    assert cfg.optim_wrapper.optimizer.fused is True
    assert cfg.model.compile is False
    assert cfg.model.backbone.with_cp is False
    assert cfg.train_dataloader.pin_memory is True
    for non_blocking in (True, False):  # the config's value, then off
        preprocessor = MODELS.build(cfg.model.data_preprocessor)
        assert preprocessor._non_blocking is non_blocking
        cfg.model.data_preprocessor.non_blocking = False

    model = MODELS.build(_model_cfg(with_cp=False, compile=False))
    assert model.compile_cfg is None and not model.backbone.with_cp
    data = model.data_preprocessor(_batches(1)[0], True)
    model(**data, mode='loss')
    assert model._compiled_tensor_losses is None  # eager: nothing compiled
    wrapper = build_optim_wrapper(model, _optim_cfg(fused=False))
    assert not wrapper.optimizer.defaults['fused']

    on = MODELS.build(_model_cfg(with_cp=True, compile=True))
    assert on.compile_cfg == {} and on.backbone.with_cp
    on.set_compile(False)
    assert on.compile_cfg is None
    with pytest.raises(TypeError, match='model.compile'):
        MODELS.build(_model_cfg(compile='yes'))


def test_feature_weight_is_made_on_the_device_of_the_images():
    model = MODELS.build(_model_cfg())
    model.feature_ramp = 0.25
    data = model.data_preprocessor(_batches(1)[0], True)
    losses = model(**data, mode='loss')
    assert losses['feature_weight'].device == data['inputs'].device
    assert float(losses['feature_weight']) == 0.25


def test_benchmark_pretrain_prints_one_json_line(capsys):
    """tools/benchmark_pretrain.py times the config's real step (here a
    DeiT-tiny-sized encoder on the ViT-B config's 224 px images and masks)
    and takes ``--cfg-options`` like tools/train.py."""
    from helpers.repo import load_tool
    module = load_tool('tools/benchmark_pretrain.py')
    capsys.readouterr()
    module.main([PRETRAIN_CONFIG, '--arch', 'deit-t', '--device', 'cpu',
                 '--batch-size', '2', '--steps', '2', '--warmup', '1',
                 '--cfg-options', 'optim_wrapper.optimizer.fused=False'])
    lines = [line for line in capsys.readouterr().out.splitlines()
             if line.startswith('{')]
    assert len(lines) == 1
    result = json.loads(lines[0])
    assert result['arch'] == 'deit-t' and result['batch'] == 2
    assert result['fused_optim'] is False  # the override reached the step
    assert result['img_per_s'] > 0 and result['img_per_s_pipelined'] > 0
    assert result['step_ms_min'] <= result['step_ms_median']
    # a 192-wide, 12-block encoder on 49 of 196 patches plus the momentum
    # encoder on all 196 and two decoders: a few GFLOP, far less than ViT-B
    assert 0.5 < result['gflop_per_img'] < 20
    assert 0 < result['fraction_of_ceiling'] < 2
    assert torch.isfinite(torch.tensor(result['loss']))


def test_one_config_line_turns_all_gpu_feeding_off():
    """``gpu_feeding = False`` (as ``tools/train.py`` applies it): the plain
    loop, preprocessor (blocking copies), collate and unpinned loaders;
    nothing changes without it; a GPU-decode config is refused."""
    from bootmae_mm.feeding.switch import apply_gpu_feeding_switch
    cfg = Config.fromfile(PRETRAIN_CONFIG)
    before = copy.deepcopy(cfg.to_dict())
    apply_gpu_feeding_switch(cfg)
    assert cfg.to_dict() == before  # on by default
    cfg.merge_from_dict(dict(gpu_feeding=False))
    apply_gpu_feeding_switch(cfg)
    assert cfg.train_cfg.type == 'EpochBasedTrainLoop'
    assert cfg.train_dataloader.collate_fn == dict(type='default_collate')
    assert cfg.train_dataloader.pin_memory is False
    assert cfg.model.data_preprocessor.type == 'SelfSupDataPreprocessor'
    preprocessor = MODELS.build(cfg.model.data_preprocessor)
    assert preprocessor._non_blocking is False
    cfg.model.data_preprocessor.type = 'GPUDecodeDataPreprocessor'
    with pytest.raises(ValueError, match='gpu_feeding=False'):
        apply_gpu_feeding_switch(cfg)
