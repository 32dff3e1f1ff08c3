"""GPU decode path on the CPU: LoadImageBytes + PackInputs +
GPUDecodeDataPreprocessor(device cpu), and tools/benchmark_data.py."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.dataset import pseudo_collate
from mmpretrain.registry import MODELS, TRANSFORMS
from PIL import Image
from torchvision.io import ImageReadMode, decode_jpeg
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as F

import bootmae_mm  # noqa: F401
from helpers.repo import load_tool

REPO = Path(__file__).resolve().parents[1]
SIZES = [(375, 500), (300, 240), (224, 224)]  # (H, W)


def _write_images(folder, fmt='JPEG'):
    rng = np.random.default_rng(0)
    paths = []
    for i, (h, w) in enumerate(SIZES):
        small = rng.integers(0, 256, (h // 8, w // 8, 3), dtype=np.uint8)
        img = Image.fromarray(small).resize((w, h), Image.BICUBIC)
        path = folder / f'img_{i}.{fmt.lower()}'
        img.save(path, fmt, **({'quality': 90} if fmt == 'JPEG' else {}))
        paths.append(str(path))
    return paths


def _batch(paths, with_mask=True):
    """The GPU-path pipeline (real transforms) + pseudo_collate."""
    load = TRANSFORMS.build(dict(type='LoadImageBytes'))
    pack = TRANSFORMS.build(dict(type='PackInputs'))
    samples = []
    for i, path in enumerate(paths):
        results = load(dict(img_path=path, sample_idx=i))
        if with_mask:
            results['mask'] = np.arange(196).reshape(14, 14) % (i + 2) == 0
        samples.append(pack(results))
    return pseudo_collate(samples)


def _preprocessor(**kwargs):
    cfg = dict(type='GPUDecodeDataPreprocessor', size=64)
    cfg.update(kwargs)
    return MODELS.build(cfg).to('cpu')


def _whole_image(h, w):
    """Settings under which get_params returns the whole h x w image."""
    return dict(scale=(1.0, 1.0), ratio=(w / h, w / h), flip_prob=0.0)


@pytest.fixture
def jpegs(tmp_path):
    return _write_images(tmp_path)


def test_load_image_bytes(jpegs):
    results = TRANSFORMS.build(dict(type='LoadImageBytes'))(
        dict(img_path=jpegs[0]))
    img = results['img']
    assert img.dtype == np.uint8 and img.ndim == 1
    assert img.tobytes() == Path(jpegs[0]).read_bytes()
    assert results['ori_shape'] == SIZES[0]
    packed = TRANSFORMS.build(dict(type='PackInputs'))(results)
    assert packed['inputs'].dtype == torch.uint8
    assert packed['inputs'].shape == (len(img), )


def test_load_image_bytes_bad_file(tmp_path):
    bad = tmp_path / 'broken.jpg'
    bad.write_bytes(b'not an image at all')
    with pytest.raises(ValueError, match='broken.jpg'):
        TRANSFORMS.build(dict(type='LoadImageBytes'))(dict(img_path=str(bad)))
    # without the header check the bytes load; decoding then names the file
    results = TRANSFORMS.build(dict(type='LoadImageBytes', read_shape=False))(
        dict(img_path=str(bad)))
    packed = TRANSFORMS.build(dict(type='PackInputs'))(results)
    with pytest.raises(ValueError, match='broken.jpg'):
        _preprocessor()(pseudo_collate([packed]))


def test_output_shape_dtype_and_samples(jpegs):
    data = _batch(jpegs)
    out = _preprocessor()(data, training=True)
    assert out['inputs'].shape == (3, 3, 64, 64)
    assert out['inputs'].dtype == torch.float32
    # normalized with mean = std = 127.5: values in [-1, 1], not constant
    assert out['inputs'].min() >= -1 - 1e-6 and out['inputs'].max() <= 1 + 1e-6
    assert out['inputs'].std() > 0.05
    assert len(out['data_samples']) == 3
    for i, (ds, path) in enumerate(zip(out['data_samples'], jpegs)):
        assert ds.img_path == path and ds.sample_idx == i
        assert ds.ori_shape == SIZES[i]
        expected = torch.from_numpy(
            np.arange(196).reshape(14, 14) % (i + 2) == 0)
        assert torch.equal(ds.mask, expected)


def test_whole_image_equals_reference_decode(jpegs):
    """Crop forced to the whole image, no flip: identical to decoding with
    torchvision on the CPU + bicubic resize + normalize, and close to PIL."""
    mean, std = (120.0, 110.0, 100.0), (50.0, 60.0, 70.0)
    for path, (h, w) in zip(jpegs, SIZES):
        out = _preprocessor(
            mean=mean, std=std, **_whole_image(h, w))(_batch([path]))
        raw = torch.frombuffer(bytearray(Path(path).read_bytes()),
                               dtype=torch.uint8)
        img = decode_jpeg(raw, mode=ImageReadMode.RGB)
        assert img.shape == (3, h, w)
        ref = F.resize(img, [64, 64], InterpolationMode.BICUBIC,
                       antialias=True).float()
        ref = (ref - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(
            std).view(3, 1, 1)
        assert torch.equal(out['inputs'][0], ref)
        # PIL decoder + PIL bicubic: other code, same image up to rounding
        pil = Image.open(path).convert('RGB').resize((64, 64),
                                                     Image.BICUBIC)
        pil = torch.from_numpy(np.asarray(pil).copy()).permute(2, 0, 1)
        pil = (pil.float() - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(
            std).view(3, 1, 1)
        err = (out['inputs'][0] - pil) * torch.tensor(std).view(3, 1, 1)
        assert err.abs().mean() < 1.5 and err.abs().max() < 16


def test_flip_and_normalization(jpegs):
    h, w = SIZES[0]
    data = _batch(jpegs[:1])
    plain = _preprocessor(mean=(0, 0, 0), std=(1, 1, 1),
                          **_whole_image(h, w))(data)['inputs']
    flip_cfg = dict(_whole_image(h, w), flip_prob=1.0)
    flipped = _preprocessor(mean=(0, 0, 0), std=(1, 1, 1),
                            **flip_cfg)(data)['inputs']
    assert not torch.equal(plain, flipped)
    assert torch.equal(flipped, plain.flip(-1))
    mean, std = (10.0, 20.0, 30.0), (2.0, 3.0, 4.0)
    normed = _preprocessor(mean=mean, std=std,
                           **_whole_image(h, w))(data)['inputs']
    expected = (plain - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(
        std).view(1, 3, 1, 1)
    assert torch.allclose(normed, expected, atol=1e-5)
    # plain is the unnormalized 0..255 image
    assert plain.min() >= 0 and plain.max() <= 255 and plain.max() > 100


def test_random_crop_follows_torchvision_get_params(jpegs):
    """Same RNG state -> the crop torchvision's get_params draws."""
    from torchvision.transforms import RandomResizedCrop
    h, w = SIZES[0]
    data = _batch(jpegs[:1])
    pre = _preprocessor(flip_prob=0.0, mean=(0, 0, 0), std=(1, 1, 1))
    torch.manual_seed(3)
    out = pre(data)['inputs'][0]
    raw = torch.frombuffer(bytearray(Path(jpegs[0]).read_bytes()),
                           dtype=torch.uint8)
    img = decode_jpeg(raw, mode=ImageReadMode.RGB)
    torch.manual_seed(3)
    top, left, ch, cw = RandomResizedCrop.get_params(img, [0.2, 1.0],
                                                     [3 / 4, 4 / 3])
    assert (ch, cw) != (h, w)
    ref = F.resized_crop(img, top, left, ch, cw, [64, 64],
                         InterpolationMode.BICUBIC, antialias=True).float()
    assert torch.equal(out, ref)
    # different draws give different crops
    assert not torch.equal(pre(data)['inputs'][0], out)


def test_non_jpeg_fallback(tmp_path):
    pngs = _write_images(tmp_path, fmt='PNG')
    h, w = SIZES[1]
    out = _preprocessor(mean=(0, 0, 0), std=(1, 1, 1),
                        **_whole_image(h, w))(_batch(pngs[1:2]))
    ref = F.resize(
        torch.from_numpy(np.asarray(Image.open(pngs[1])).copy()).permute(
            2, 0, 1), [64, 64], InterpolationMode.BICUBIC,
        antialias=True).float()
    assert torch.equal(out['inputs'][0], ref)


def _check_json(stdout, mode):
    lines = [ln for ln in stdout.splitlines() if ln.strip()]
    assert len(lines) == 1
    result = json.loads(lines[0])
    assert result['mode'] == mode and result['workers'] == 0
    assert result['batch'] == 4 and result['n_measured'] == 8
    assert result['img_per_s'] > 0


def test_benchmark_data_smoke(tmp_path, capsys):
    """tools/benchmark_data.py runs end to end and prints JSON lines: the
    CPU path as a script, the --gpu-decode path in-process (saves the
    second start-up)."""
    args = [
        '--num-images', '16', '--workers', '0', '--batch-size', '4',
        '--measure-batches', '2', '--skip-batches', '1', '--out-dir',
        str(tmp_path)
    ]
    script = REPO / 'tools' / 'benchmark_data.py'
    proc = subprocess.run([sys.executable, str(script)] + args,
                          capture_output=True, text=True, timeout=120,
                          cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    _check_json(proc.stdout, 'cpu')

    module = load_tool('tools/benchmark_data.py')
    capsys.readouterr()
    module.main(args + ['--gpu-decode', '--device', 'cpu'])
    _check_json(capsys.readouterr().out, 'gpu_decode')
    # the second run reused the JPEGs of the first
    assert len(list(tmp_path.rglob('*.jpg'))) == 16


def test_truncated_jpeg_in_batch_is_named(jpegs, tmp_path):
    data = Path(jpegs[0]).read_bytes()
    bad = tmp_path / 'truncated.jpg'
    bad.write_bytes(data[:len(data) // 3])
    batch = _batch([jpegs[1], str(bad), jpegs[2]])
    with pytest.raises(ValueError, match='truncated.jpg'):
        _preprocessor()(batch)
