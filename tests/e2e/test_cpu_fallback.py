"""The production configs on a machine without GPU, as they are: the
pretraining, fine-tuning, linear-probing and segmentation configs (tiny
archs, small generated data) train through tools/train.py, and the
pretraining one through tools/dist_train.sh CONFIG 2 (gloo), with exactly
one warning saying what fell back to CPU settings and how to silence it."""
import math
import os.path as osp
import re

import pytest
import torch
from mmengine.config import Config, DictAction
from mmengine.optim import OptimWrapper, build_optim_wrapper

from bootmae_mm.engine import device_fallback
from bootmae_mm.engine.device_fallback import fallback_message, fit_to_device
from helpers.bootmae import save_bootmae_checkpoint
from helpers.demo_pretrain import run_train_tool
from helpers.downstream import CLASSES, make_tiny_imagenet, tiny_cls_config
from helpers.repo import REPO_ROOT, free_port, run_tool
from helpers.segmentation import (
    ARCH,
    SEG_CONFIG,
    make_ade20k,
    tiny_seg_train_config,
)
from helpers.tiny_pretrain import PRETRAIN_CONFIG, write_tiny_pretrain_config


@pytest.fixture(autouse=True)
def no_accelerator(monkeypatch):
    """A machine without GPU, also on one with: the tools run with no CUDA
    device visible, and this process's check says none."""
    monkeypatch.setenv('CUDA_VISIBLE_DEVICES', '')
    monkeypatch.setattr(device_fallback, 'has_accelerator', lambda: False)


WARNING = 'No GPU (or other accelerator) here'
# torch's own warning when a data loader pins memory without an accelerator
TORCH_PIN_WARNING = "'pin_memory' argument is set as true"


def silencing_options(output):
    """The --cfg-options the warning suggests."""
    match = re.search(r'silence this warning, add: --cfg-options (.*)',
                      output)
    assert match, output[-3000:]
    return match.group(1).split()


def assert_one_warning(output, expected_changes):
    assert output.count(WARNING) == 1, output[-5000:]
    assert silencing_options(output) == expected_changes
    assert 'full precision' in output
    assert TORCH_PIN_WARNING not in output


@pytest.fixture(scope='module')
def imagenet(tmp_path_factory):
    """ImageNet layout, 3 classes: train/ 4 pictures each, val/ 2."""
    return make_tiny_imagenet(tmp_path_factory.mktemp('imagenet'))


@pytest.mark.parametrize('ranks', [1, 2])
def test_pretraining_config_trains_on_cpu(tmp_path, imagenet, ranks,
                                          monkeypatch):
    """configs/bootmae_vit-b_800e.py (AmpOptimWrapper bf16, pinned
    memory, fused AdamW, the prefetching loop) shrunk, one process and
    two gloo ranks."""
    config = write_tiny_pretrain_config(tmp_path / 'tiny_pretrain.py',
                                        batch_size=4, classes=CLASSES)
    monkeypatch.setenv('PORT', str(free_port()))  # tools/dist_train.sh
    code, out, iters = run_train_tool(
        config, tmp_path / 'work', launcher=ranks if ranks > 1 else None,
        extra=['--cfg-options',
               f'train_dataloader.dataset.dataset.data_root={imagenet}'])
    assert code == 0, out[-5000:]
    # 12 pictures, 12 / ranks per rank, 4 per step (the last one short)
    assert iters[-1] == math.ceil(12 / ranks / 4), out[-3000:]
    assert_one_warning(out, ['optim_wrapper.type=OptimWrapper',
                             'train_dataloader.pin_memory=False'])
    assert (tmp_path / 'work' / 'epoch_1.pth').is_file()


@pytest.fixture(scope='module')
def pretrained(tmp_path_factory):
    """A tiny BootMAE checkpoint (3 blocks) to fine-tune and probe."""
    path = str(tmp_path_factory.mktemp('ckpt') / 'bootmae_tiny.pth')
    save_bootmae_checkpoint(path)
    return path


def train_tool_output(cfg, tmp_path):
    """``cfg`` dumped and trained by ``tools/train.py`` (work dir
    ``tmp_path/work``): its output, the run having succeeded."""
    path = str(tmp_path / 'tiny.py')
    cfg.dump(path)
    result = run_tool(['tools/train.py', path, '--work-dir',
                       str(tmp_path / 'work')])
    assert result.returncode == 0, result.stdout[-5000:]
    return result.stdout


@pytest.mark.parametrize('config', [
    'configs/finetune/bootmae_vit-b_ft-100e_in1k.py',
    'configs/linear/bootmae_vit-b_linear-90e_in1k.py'])
def test_classification_configs_train_on_cpu(tmp_path, imagenet, pretrained,
                                             config):
    """Fine-tuning (AmpOptimWrapper fp16 dynamic loss scale, EMA) and
    linear probing (AmpOptimWrapper, LARS): one epoch and validation."""
    cfg = tiny_cls_config(config, pretrained, data_root=imagenet)
    cfg.log_level = 'INFO'
    out = train_tool_output(cfg, tmp_path)
    assert 'accuracy/top1' in out
    assert_one_warning(out, [
        'optim_wrapper.type=OptimWrapper',
        'train_dataloader.pin_memory=False',
        'val_dataloader.pin_memory=False',
        'test_dataloader.pin_memory=False'])


def test_segmentation_config_trains_on_cpu(tmp_path):
    """UperNet (AmpOptimWrapper fp16, SyncBN): two iterations and
    validation in one process (SyncBN syncs nothing there, so it stays)."""
    ckpt = tmp_path / 'bootmae.pth'
    save_bootmae_checkpoint(ckpt, arch=ARCH)
    cfg = tiny_seg_train_config(SEG_CONFIG, make_ade20k(tmp_path / 'ade'),
                                str(ckpt), max_iters=2)
    out = train_tool_output(cfg, tmp_path)
    assert 'mIoU' in out
    assert_one_warning(out, ['optim_wrapper.type=OptimWrapper'])


# ------------------------------------------------ the fallback's decisions
def test_suggested_options_silence_the_fallback():
    """The --cfg-options of the warning ask for exactly the CPU settings:
    with them the config needs no change (no second warning)."""
    cfg = Config.fromfile(PRETRAIN_CONFIG)
    changes = fit_to_device(cfg)
    assert changes and cfg.optim_wrapper.type == 'OptimWrapper'
    assert 'dtype' not in cfg.optim_wrapper
    assert 'loss_scale' not in cfg.optim_wrapper
    options = silencing_options(fallback_message(changes))
    fresh = Config.fromfile(PRETRAIN_CONFIG)
    # parsed as tools/train.py parses them
    fresh.merge_from_dict({key: DictAction._parse_iterable(value)
                           for key, value in (o.split('=', 1)
                                              for o in options)})
    assert fit_to_device(fresh) == []
    assert fresh.optim_wrapper == cfg.optim_wrapper
    assert fresh.train_dataloader.pin_memory is False


@pytest.mark.parametrize('config', [
    'configs/bootmae_vit-b_800e.py',
    'configs/finetune/bootmae_vit-b_ft-100e_in1k.py',
    'configs/linear/bootmae_vit-b_linear-90e_in1k.py',
    'configs/segmentation/upernet_bootmae_vit-b_8xb2-160k_ade20k-512x512.py'])
def test_plain_optim_wrapper_drops_the_amp_keys(config):
    """The README's CPU advice, --cfg-options optim_wrapper.type=
    OptimWrapper, works for every config (the AMP-only keys a base config
    gives go), on any machine."""
    cfg = Config.fromfile(osp.join(REPO_ROOT, config))
    cfg.merge_from_dict({'optim_wrapper.type': 'OptimWrapper'})
    fit_to_device(cfg)
    optim = cfg.optim_wrapper.to_dict()
    optim.pop('constructor', None)
    optim.pop('paramwise_cfg', None)
    optim['optimizer'] = dict(type='SGD', lr=0.1)
    wrapper = build_optim_wrapper(torch.nn.Linear(2, 2), optim)
    assert type(wrapper) is OptimWrapper


def test_cpu_settings_for_distributed_runs():
    """Across CPU ranks SyncBN becomes BN (torch's SyncBN refuses CPU
    tensors), and an FSDP strategy gets device_id='cpu'."""
    seg = Config.fromfile(SEG_CONFIG)
    seg.launcher = 'pytorch'
    changes = fit_to_device(seg)
    assert 'model.decode_head.norm_cfg.type=BN' in changes
    assert seg.model.decode_head.norm_cfg.type == 'BN'
    assert seg.model.auxiliary_head.norm_cfg.type == 'BN'
    fsdp = Config.fromfile(osp.join(REPO_ROOT, 'configs',
                                    'bootmae_vit-l_800e_fsdp.py'))
    fsdp.launcher = 'pytorch'
    assert 'strategy.model_wrapper.device_id=cpu' in fit_to_device(fsdp)
    assert fsdp.strategy.model_wrapper.device_id == 'cpu'


def test_nothing_changes_with_an_accelerator(monkeypatch):
    cfg = Config.fromfile(PRETRAIN_CONFIG)
    before = cfg.to_dict()
    monkeypatch.setattr(device_fallback, 'has_accelerator', lambda: True)
    assert fit_to_device(cfg) == []
    assert cfg.to_dict() == before
