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

REPO = Path(__file__).resolve().parents[2]
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


def test_load_image_bytes_bad_file(tmp_path, monkeypatch):
    """A file with no image header, an empty file: skipped with a warning
    naming it (None: the dataset draws another index), or with
    skip_bad=False a ValueError naming it."""
    bad = tmp_path / 'broken.jpg'
    bad.write_bytes(b'not an image at all')
    empty = tmp_path / 'empty.jpg'
    empty.write_bytes(b'')
    lines = _log_lines(monkeypatch)
    load = TRANSFORMS.build(dict(type='LoadImageBytes'))
    assert load(dict(img_path=str(bad))) is None
    assert load(dict(img_path=str(empty))) is None
    assert 'broken.jpg' in lines[0] and 'empty.jpg' in lines[1]
    assert '2 unreadable file(s)' in lines[1]
    strict = TRANSFORMS.build(dict(type='LoadImageBytes', skip_bad=False))
    with pytest.raises(ValueError, match='broken.jpg'):
        strict(dict(img_path=str(bad)))
    with pytest.raises(ValueError, match='empty file .*empty.jpg'):
        strict(dict(img_path=str(empty)))
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


def _decode(path):
    raw = torch.frombuffer(bytearray(Path(path).read_bytes()),
                           dtype=torch.uint8)
    return decode_jpeg(raw, mode=ImageReadMode.RGB)


def _per_image(img, box, flip, size=(64, 64), exact=True):
    """The per-image path: torchvision's resized_crop (+ flip) of one image.
    ``exact``: on a float copy, rounded at the end (what the CUDA kernel
    does with uint8 input); else torch's uint8 CPU kernel."""
    src = img.float() if exact else img
    out = F.resized_crop(src, *box, list(size), InterpolationMode.BICUBIC,
                         antialias=True)
    if flip:
        out = F.horizontal_flip(out)
    return out.round().clamp(0, 255) if exact else out.float()


def _assert_same_rounding(out, ref, std=(1.0, 1.0, 1.0)):
    """Integer images equal up to a rare rounding tie (see
    test_batched_crop_equals_per_image_path)."""
    diff = (out - ref).abs() * torch.tensor(std).view(3, 1, 1)
    assert diff.max() <= 1 + 1e-4
    assert (diff > 1e-4).float().mean() <= 1e-3


def test_whole_image_equals_reference_decode(jpegs):
    """Crop forced to the whole image, no flip: the same as decoding with
    torchvision on the CPU + bicubic resize + normalize, and close to PIL."""
    mean, std = (120.0, 110.0, 100.0), (50.0, 60.0, 70.0)
    for path, (h, w) in zip(jpegs, SIZES):
        out = _preprocessor(
            mean=mean, std=std, **_whole_image(h, w))(_batch([path]))
        img = _decode(path)
        assert img.shape == (3, h, w)
        ref = _per_image(img, (0, 0, h, w), False)
        ref = (ref - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(
            std).view(3, 1, 1)
        # same weighted sums, other summation order: equal up to a rare
        # rounding that lands the other side of .5 (one value in 12,288
        # here): at most 1 grey level on at most 0.1 % of the values
        _assert_same_rounding(out['inputs'][0], ref, std)
        # PIL decoder + PIL bicubic: other code, same image up to rounding
        pil = Image.open(path).convert('RGB').resize((64, 64),
                                                     Image.BICUBIC)
        pil = torch.from_numpy(np.asarray(pil).copy()).permute(2, 0, 1)
        pil = (pil.float() - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(
            std).view(3, 1, 1)
        err = (out['inputs'][0] - pil) * torch.tensor(std).view(3, 1, 1)
        assert err.abs().mean() < 1.5 and err.abs().max() < 16


def test_batched_crop_equals_per_image_path(jpegs):
    """The batched crop/resize/flip against the per-image path on the same
    boxes. Against the float per-image resize (the CUDA path) the sums are
    the same and only their order differs, so the integer results agree up
    to a rounding tie: at most 1 grey level, on at most 0.1 % of the
    values. Against torch's uint8 CPU kernel, which rounds the horizontal
    pass to uint8 (error <= 0.5 times the vertical weights' absolute sum,
    about 1.2 for this kernel) and clips that intermediate to 0..255 (the
    bicubic overshoot near edges is lost), the values differ by about 0.1
    grey level on average and by a few levels at most."""
    from bootmae_mm.feeding.batched_crop import (
        batched_resized_crop,
    )
    images = [_decode(p) for p in jpegs]
    rng = np.random.default_rng(5)
    boxes, flips = [], []
    for _ in range(4):
        for img in images:
            h, w = img.shape[1:]
            bh, bw = rng.integers(8, h + 1), rng.integers(8, w + 1)
            boxes.append([rng.integers(0, h - bh + 1),
                          rng.integers(0, w - bw + 1), bh, bw])
            flips.append(bool(rng.random() < 0.5))
    batch_images = images * 4
    # a small pixel budget also exercises the grouped (sorted) path
    for max_pixels in (1 << 26, 60000):
        out = batched_resized_crop(batch_images, torch.tensor(boxes),
                                   torch.tensor(flips), (64, 48),
                                   max_pixels=max_pixels)
        assert out.shape == (12, 3, 64, 48) and out.dtype == torch.float32
        exact = torch.stack([
            _per_image(img, box, flip, (64, 48))
            for img, box, flip in zip(batch_images, boxes, flips)])
        for i in range(len(out)):
            _assert_same_rounding(out[i], exact[i])
        uint8 = torch.stack([
            _per_image(img, box, flip, (64, 48), exact=False)
            for img, box, flip in zip(batch_images, boxes, flips)])
        diff = (out - uint8).abs()
        assert diff.mean() < 0.3 and diff.max() <= 4


@pytest.mark.parametrize('shape', [(375, 500), (40, 400)])
def test_crop_boxes_follow_random_resized_crop(shape):
    """Boxes of sample_crop_boxes against torchvision's get_params: area
    fraction, log aspect ratio and relative offsets by two-sample
    Kolmogorov-Smirnov tests (reject at the 0.1 % level: the statistic's
    sampling bound 1.95 * sqrt(2 / n)); a 40 x 400 image mostly fails the
    10 tries and takes the central fallback box, at the same rate."""
    from scipy.stats import ks_2samp
    from torchvision.transforms import RandomResizedCrop

    from bootmae_mm.feeding.crop_box import sample_crop_boxes
    h, w = shape
    n = 4000
    scale, ratio = (0.2, 1.0), (3 / 4, 4 / 3)
    rng = np.random.default_rng(0)
    ours = sample_crop_boxes([h] * n, [w] * n, scale, ratio, rng.random)
    torch.manual_seed(0)
    img = torch.zeros(1, h, w)
    ref = np.array([RandomResizedCrop.get_params(img, list(scale),
                                                 list(ratio))
                    for _ in range(n)])
    assert (ours[:, 0] >= 0).all() and (ours[:, 1] >= 0).all()
    assert (ours[:, 0] + ours[:, 2] <= h).all()
    assert (ours[:, 1] + ours[:, 3] <= w).all()

    def stats(boxes):
        top, left, bh, bw = boxes.T
        return dict(area=bh * bw / (h * w), log_ratio=np.log(bw / bh),
                    top=(top + 0.5) / (h - bh + 1),
                    left=(left + 0.5) / (w - bw + 1))

    a, b = stats(ours), stats(ref)
    bound = 1.95 * np.sqrt(2 / n)
    for key in a:
        result = ks_2samp(a[key], b[key])
        assert result.statistic < bound, (key, result)
    # the central fallback: same frequency (4 binomial standard errors)
    fb_ours = ((ours[:, 2] == h) & (ours[:, 0] == 0)).mean()
    fb_ref = ((ref[:, 2] == h) & (ref[:, 0] == 0)).mean()
    assert abs(fb_ours - fb_ref) <= 4 * np.sqrt(
        max(fb_ref, 1 / n) * (1 - fb_ref) * 2 / n)
    if h == 40:
        assert fb_ref > 0.3  # the fallback was exercised


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


def test_pipeline_crop_box_is_used(jpegs):
    """RandomResizedCropBox in the workers draws box and flip from the
    sample's random state; the preprocessor applies exactly those."""
    load = TRANSFORMS.build(dict(type='LoadImageBytes'))
    crop = TRANSFORMS.build(dict(type='RandomResizedCropBox', flip_prob=0.5))
    pack = TRANSFORMS.build(dict(
        type='PackInputs', meta_keys=('img_path', 'ori_shape', 'crop_box',
                                      'flip')))
    np.random.seed(4)
    samples = [pack(crop(load(dict(img_path=p)))) for p in jpegs * 3]
    flips = [s['data_samples'].flip for s in samples]
    assert any(flips) and not all(flips)
    pre = _preprocessor(mean=(0, 0, 0), std=(1, 1, 1))
    torch.manual_seed(0)
    state = torch.get_rng_state()
    out = pre(pseudo_collate(samples))['inputs']
    assert torch.equal(torch.get_rng_state(), state)  # nothing drawn here
    for i, s in enumerate(samples):
        box, flip = s['data_samples'].crop_box, s['data_samples'].flip
        assert box != (0, 0) + SIZES[i % 3]
        ref = _per_image(_decode(jpegs[i % 3]), box, flip)
        _assert_same_rounding(out[i], ref)


def test_non_jpeg_fallback(tmp_path):
    pngs = _write_images(tmp_path, fmt='PNG')
    h, w = SIZES[1]
    out = _preprocessor(mean=(0, 0, 0), std=(1, 1, 1),
                        **_whole_image(h, w))(_batch(pngs[1:2]))
    ref = _per_image(
        torch.from_numpy(np.asarray(Image.open(pngs[1])).copy()).permute(
            2, 0, 1), (0, 0, h, w), False)
    _assert_same_rounding(out['inputs'][0], ref)


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


def _log_lines(monkeypatch):
    from mmengine.logging import MMLogger
    lines = []
    logger = MMLogger.get_current_instance()
    monkeypatch.setattr(logger, 'warning', lines.append)
    return lines


def test_truncated_jpeg_in_batch_is_skipped_and_named(jpegs, tmp_path,
                                                      monkeypatch):
    """A truncated JPEG (its header reads, so LoadImageBytes passes it)
    costs one sample: a warning names it, the next good sample of the batch
    (image, crop, mask, data sample) takes its place, the batch keeps its
    size; a batch of bad files only raises an error naming them."""
    from bootmae_mm.datasets import mask_collate
    data = Path(jpegs[0]).read_bytes()
    bad = tmp_path / 'truncated.jpg'
    bad.write_bytes(data[:len(data) // 3])
    lines = _log_lines(monkeypatch)
    paths = [jpegs[1], str(bad), jpegs[2]]
    batch = _batch(paths)
    masks = [s.mask.clone() for s in batch['data_samples']]
    load = TRANSFORMS.build(dict(type='LoadImageBytes'))
    crop = TRANSFORMS.build(dict(type='RandomResizedCropBox'))
    pack = TRANSFORMS.build(dict(
        type='PackInputs', meta_keys=('img_path', 'crop_box', 'flip')))
    samples = []
    for i, path in enumerate(paths):
        results = crop(load(dict(img_path=path)))
        results['mask'] = masks[i].numpy()
        samples.append(pack(results))
    for data in (batch, mask_collate(samples, inputs='list')):
        lines.clear()
        out = _preprocessor()(data)
        assert out['inputs'].shape == (3, 3, 64, 64)
        assert len(lines) == 1 and 'truncated.jpg' in lines[0]
        assert 'Skipped' in lines[0] and 'img_2.jpeg' in lines[0]
        samples_out = out['data_samples']
        assert [s.img_path for s in samples_out] == [
            jpegs[1], jpegs[2], jpegs[2]]
        assert torch.equal(out['inputs'][1], out['inputs'][2])
        assert torch.equal(samples_out[1].mask, masks[2])
        assert torch.equal(samples_out[0].mask, masks[0])
    with pytest.raises(ValueError, match='no image .*truncated.jpg'):
        _preprocessor()(_batch([str(bad)]))


def test_bad_files_through_the_real_gpu_path(jpegs, tmp_path, monkeypatch):
    """CustomDataset + DataLoader + preprocessor over a folder with a file
    that is no image (skipped in the worker, another index drawn) and a
    truncated JPEG (skipped in the preprocessor): every batch is full and
    both files are named in warnings."""
    from mmengine.registry import FUNCTIONS
    from mmpretrain.registry import DATASETS
    folder = Path(jpegs[0]).parent
    (folder / 'not_an_image.jpg').write_bytes(b'hello')
    data = Path(jpegs[0]).read_bytes()
    (folder / 'truncated.jpg').write_bytes(data[:len(data) // 3])
    dataset = DATASETS.build(dict(
        type='CustomDataset', data_root=str(folder), with_label=False,
        pipeline=[dict(type='LoadImageBytes'),
                  dict(type='RandomResizedCropBox'),
                  dict(type='PackInputs',
                       meta_keys=('img_path', 'crop_box', 'flip'))]))
    assert len(dataset) == 5
    lines = _log_lines(monkeypatch)
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=5, collate_fn=lambda batch: FUNCTIONS.get(
            'mask_collate')(batch, inputs='list'))
    pre = _preprocessor()
    np.random.seed(0)
    for _ in range(2):
        for batch in loader:
            out = pre(batch)
            assert out['inputs'].shape == (5, 3, 64, 64)
            assert all(s.img_path != str(folder / 'truncated.jpg')
                       for s in out['data_samples'])
    text = '\n'.join(lines)
    assert 'not_an_image.jpg' in text and 'truncated.jpg' in text
