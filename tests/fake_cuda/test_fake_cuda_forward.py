"""The CUDA path checked without a GPU (docs/benchmarks.md, "Fake-CUDA
tier"): the production configs' models (tiny archs) with every parameter
and buffer on a fake ``cuda:0``, fed a real batch of their real pipelines,
run the data preprocessor and the training forward under bf16 autocast;
every output lands on ``cuda:0`` with the dtype it should have (losses
fp32), the momentum-target update runs there, and no CPU tensor is mixed
in (fake tensors refuse a device mix as CUDA does)."""

import pytest
import torch
from mmengine.dataset import default_collate, pseudo_collate
from mmengine.registry import DefaultScope
from torch._subclasses.fake_tensor import (
    DataDependentOutputException,
    FakeTensorDeviceMismatchError,
)
from torch.fx.experimental.symbolic_shapes import GuardOnDataDependentSymNode

import bootmae_mm  # noqa: F401
import bootmae_mm.segmentation  # noqa: F401
from bootmae_mm.datasets.mask_collate import mask_collate
from bootmae_mm.feeding.prefetch_loop import batch_tensors
from helpers.downstream import CLASSES, make_tiny_imagenet, tiny_cls_config
from helpers.fake_cuda import (
    CUDA,
    cuda_autocast,
    fake_batch,
    fake_mode,
    module_to_fake_cuda,
    record_module_outputs,
    to_fake_cuda,
)
from helpers.image_folder import make_image_folder
from helpers.segmentation import (
    SEG_CONFIG,
    make_ade20k,
    tiny_seg_train_config,
)
from helpers.tiny_pretrain import write_tiny_pretrain_config

BATCH = 4


@pytest.fixture(scope='module')
def imagenet(tmp_path_factory):
    return make_tiny_imagenet(tmp_path_factory.mktemp('imagenet'))


def build(cfg, scope):
    """The config's model (with the top-level data preprocessor, as the
    Runner gives it) and a collated batch of its training pipeline."""
    if scope == 'mmseg':
        from mmseg.registry import DATASETS, MODELS
    else:
        from mmpretrain.registry import DATASETS, MODELS
    with DefaultScope.overwrite_default_scope(scope):
        if cfg.get('data_preprocessor') is not None:
            cfg.model.setdefault('data_preprocessor', cfg.data_preprocessor)
        model = MODELS.build(cfg.model)
        dataset = DATASETS.build(cfg.train_dataloader.dataset)
        samples = [dataset[(i, i) if 'SeededDataset' in
                           cfg.train_dataloader.dataset.type else i]
                   for i in range(BATCH)]
    model.train()
    return model, samples


def pretraining(tmp_path, imagenet):
    """configs/bootmae_vit-b_800e.py shrunk: BootMAE with the
    BootMAEDataPreprocessor, its batch collated by mask_collate."""
    from mmengine.config import Config
    path = write_tiny_pretrain_config(tmp_path / 'tiny.py', classes=CLASSES)
    cfg = Config.fromfile(path)
    cfg.train_dataloader.dataset.dataset.data_root = imagenet
    model, samples = build(cfg, 'mmpretrain')
    return model, mask_collate(samples)


def assert_on_cuda(name, tensor, dtype=None):
    assert tensor.device == CUDA, (name, tensor.device)
    if dtype is not None:
        assert tensor.dtype == dtype, (name, tensor.dtype)


def run_fake_cuda(model, batch):
    """Preprocess ``batch`` and run the training forward on fake cuda:0
    under bf16 autocast; check where every output is and return the
    losses and the recorded module outputs."""
    mode = fake_mode()
    module_to_fake_cuda(mode, model)
    fake = fake_batch(mode, batch)
    with mode:
        data = model.data_preprocessor(fake, training=True)
        inputs = data['inputs']
        for t in [inputs] if torch.is_tensor(inputs) else inputs:
            assert_on_cuda('inputs', t, torch.float32)
        for t in batch_tensors(data['data_samples']):
            assert_on_cuda('data_samples', t)
        with record_module_outputs(model) as outputs, cuda_autocast():
            losses = model(**data, mode='loss')
    for name, value in losses.items():
        if 'loss' in name:  # what the optim wrapper sums and backprops
            assert_on_cuda(name, value, torch.float32)
            assert value.dim() == 0, (name, value.shape)
        for t in batch_tensors(value):
            assert_on_cuda(name, t)
    for name, _, t in outputs:
        assert_on_cuda(name, t)
    # autocast took effect: every linear and convolution layer computed in
    # bf16
    layers = [(name, t.dtype) for name, module, t in outputs
              if isinstance(module, (torch.nn.Linear, torch.nn.Conv2d))]
    assert layers and all(dtype == torch.bfloat16 for _, dtype in layers), \
        [layer for layer in layers if layer[1] != torch.bfloat16]
    return mode, losses


def test_pretraining_on_fake_cuda(tmp_path, imagenet):
    model, batch = pretraining(tmp_path, imagenet)
    # with num_masking_patches given, the mask count is checked on the
    # device: the step reads no value back (fake tensors have none)
    assert model.num_masking_patches is not None
    mode, losses = run_fake_cuda(model, batch)
    assert set(losses) == {'loss_pixel', 'loss_feature', 'feature_weight'}
    # the momentum-target update (what MomentumTargetHook calls after the
    # optimizer step) runs on the device, in fp32
    with mode:
        model.copy_online_to_target()
        model.update_target(0.999)
    for name, buf in model.target_encoder.named_buffers():
        assert_on_cuda(f'target_encoder.{name}', buf, torch.float32)


def test_mask_count_without_num_masking_patches_reads_back(tmp_path,
                                                          imagenet):
    """Without ``num_masking_patches`` the step counts the mask on the host
    (bool / int of a device tensor: a read back, which fake tensors, having
    no values, refuse)."""
    model, batch = pretraining(tmp_path, imagenet)
    model.num_masking_patches = None
    with pytest.raises((DataDependentOutputException,
                        GuardOnDataDependentSymNode)) as err:
        run_fake_cuda(model, batch)
    assert any(entry.name == 'num_visible' for entry in err.traceback)


def test_a_cpu_tensor_made_in_a_forward_fails_the_tier(tmp_path, imagenet):
    """A planted device mix: the pixel decoder adds a tensor it makes on
    the CPU (no ``device=``), as a slip in a forward would."""
    model, batch = pretraining(tmp_path, imagenet)
    decoder_forward = model.pixel_decoder.forward

    def forward_with_a_cpu_tensor(*args, **kwargs):
        out = decoder_forward(*args, **kwargs)
        return out + torch.zeros(out.shape[-1])

    model.pixel_decoder.forward = forward_with_a_cpu_tensor
    with pytest.raises(FakeTensorDeviceMismatchError, match='cpu'):
        run_fake_cuda(model, batch)


@pytest.mark.parametrize('config', [
    'configs/finetune/bootmae_vit-b_ft-100e_in1k.py',
    'configs/linear/bootmae_vit-b_linear-90e_in1k.py'])
def test_classification_on_fake_cuda(imagenet, config):
    """Fine-tuning (Mixup / CutMix in the data preprocessor) and linear
    probing. The batch is stacked (default_collate): with the loader's
    default pseudo_collate, mmengine's stack_batch reads the padding sizes
    of small host tensors back, which has no values under fake tensors
    (docs/benchmarks.md)."""
    cfg = tiny_cls_config(config, None, data_root=imagenet)
    model, samples = build(cfg, 'mmpretrain')
    _, losses = run_fake_cuda(model, default_collate(samples))
    assert set(losses) == {'loss'}


def test_segmentation_on_fake_cuda(tmp_path):
    """UperNet on the BootMAE encoder (SyncBN, one process), its
    SegDataPreProcessor padding the pseudo-collated batch."""
    root = make_ade20k(tmp_path / 'ade')
    cfg = tiny_seg_train_config(SEG_CONFIG, root, None)
    model, samples = build(cfg, 'mmseg')
    _, losses = run_fake_cuda(model, pseudo_collate(samples))
    assert {'decode.loss_ce', 'aux.loss_ce'} <= set(losses)


def test_gpu_decode_tensor_path_on_fake_cuda(tmp_path, monkeypatch):
    """GPUDecodeDataPreprocessor after the decode: batched crop / resize /
    flip, normalization and the masks, on fake cuda:0. The decode itself
    (JPEG magic read on the host, nvjpeg) needs the bytes' values: it runs
    here on the real CPU and its images go to fake cuda:0 as nvjpeg would
    leave them. Fake tensors have no pinned memory (``aten._pin_memory``):
    the crop's pinned copies of its small index tensors become plain
    copies."""
    from mmcv.transforms import Compose
    from mmengine.registry import TRANSFORMS as ENGINE_TRANSFORMS

    from bootmae_mm.feeding import batched_crop
    from bootmae_mm.feeding.gpu_decode import (
        GPUDecodeDataPreprocessor,
    )
    root = make_image_folder(tmp_path / 'imgs', classes=('a', ), ext='jpg',
                             per_class=3, size=40)
    make_image_folder(tmp_path / 'imgs', classes=('b', ), ext='png',
                      per_class=1, size=48)
    paths = sorted(str(p) for p in (tmp_path / 'imgs').rglob('*.*'))
    assert root and len(paths) == BATCH
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        pipeline = Compose([ENGINE_TRANSFORMS.build(t) for t in [
            dict(type='LoadImageBytes'),
            dict(type='RandomResizedCropBox', flip_prob=0.5),
            dict(type='BootMAEMaskGenerator', img_size=32, patch_size=8,
                 num_masking_patches=12, num_block_masking_patches=8,
                 min_num_patches=2, max_num_patches=None),
            dict(type='PackInputs', meta_keys=('img_path', 'ori_shape',
                                               'crop_box', 'flip'))]])
        batch = mask_collate([pipeline(dict(img_path=p)) for p in paths],
                             inputs='list')
    pre = GPUDecodeDataPreprocessor(size=32, non_blocking=True)
    names = pre._names(batch['data_samples'], BATCH)
    images, errors = pre._decode(batch['inputs'], names)  # real, CPU
    assert not errors
    mode = fake_mode()
    module_to_fake_cuda(mode, pre)
    fake_images = [to_fake_cuda(mode, img) for img in images]
    monkeypatch.setattr(pre, '_decode',
                        lambda inputs, names: (list(fake_images), {}))
    monkeypatch.setattr(batched_crop, '_to_device',
                        lambda tensor, device: tensor.to(device))
    fake = fake_batch(mode, batch)
    with mode:
        out = pre(fake, training=True)
    assert_on_cuda('inputs', out['inputs'], torch.float32)
    assert out['inputs'].shape == (BATCH, 3, 32, 32)
    for sample in out['data_samples']:
        assert_on_cuda('mask', sample.mask)
        assert sample.mask.shape == (4, 4)
