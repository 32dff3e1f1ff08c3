"""Images per second of the BootMAE pretraining data path, per worker count.

What is timed: a real mmpretrain ``CustomDataset`` (``data_prefix`` = a folder
of JPEGs) whose pipeline is built from config dicts, read through a torch
``DataLoader`` (mmengine ``InfiniteSampler`` with shuffling, mmengine
``pseudo_collate``, ``prefetch_factor=2``, mmengine's worker seeding), and
the model's data preprocessor applied to each batch in the main process on
``--device``, i.e. everything between the files and the model's input tensor:

* CPU path (default): ``LoadImageFromFile`` (cv2 decode) ->
  ``RandomResizedCrop`` 224, scale (0.2, 1), bicubic (pillow backend, as in
  mmpretrain's MAE configs) -> ``RandomFlip`` 0.5 -> ``BootMAEMaskGenerator``
  -> ``PackInputs``; then mmengine's ``ImgDataPreprocessor`` (BGR -> RGB,
  normalize with mean = std = 127.5, stack).
* ``--gpu-decode``: ``LoadImageBytes`` -> ``RandomResizedCropBox`` (box
  and flip drawn in the worker) -> ``BootMAEMaskGenerator`` -> ``PackInputs``
  in the workers, ``mask_collate`` (masks in one tensor); then
  ``GPUDecodeDataPreprocessor`` (batched ``torchvision.io.decode_jpeg`` on
  ``--device``, batched crop/resize/flip, normalize). With an older
  bootmae_mm on the path (no ``RandomResizedCropBox`` / ``mask_collate``),
  the older pipeline (boxes drawn in the preprocessor, ``pseudo_collate``)
  is timed, so the same tool measures before and after. Its GPU figures
  need a CUDA device (``--device cuda``); on a CPU-only machine it runs with
  ``--device cpu`` (libjpeg-turbo, torch ops on the CPU), which says nothing
  about the GPU rate.

The mask transform is included when ``BootMAEMaskGenerator`` is registered in
mmpretrain's ``TRANSFORMS`` (``--mask``/``--no-mask`` force it on/off).

Images: ``--num-images`` (1,000) random-content 500 x 375 JPEGs (quality 90),
generated once (``--out-dir`` keeps them in a sub-folder named after
the settings and reuses them): smooth multi-scale
random colour fields plus fine grain, about 55-90 KB each like photos at that
size (pure noise would be far larger and slower to decode). Files are read
from the OS page cache after generation; a cold disk would only be slower.

Steady state, not prefetch: with ``w`` workers the loader keeps up to
``2 w`` batches in flight, and the first batches arrive after worker start-up
and the initial fill. So the clock starts only after ``--skip-batches``
(default ``2 * 2 * max(w, 1)``) batches have been received, and then runs over
at least ``--measure-batches`` batches and at least ``10 * 2 * w`` batches: the
work in flight at the start of the window (at most ``2 w`` batches) is then
at most 10 % of what is counted, and the same amount is in flight at its end.
The sampler is infinite, so no epoch boundary restarts the workers inside the
window. Printed: one JSON line per worker count (``workers=0`` means loading in
the main process) with img/s, img/s per worker (img/s / max(w, 1)), batch
size, the number of images and seconds measured, and the machine's 1-minute
load average at the end (other processes competing for the cores lower the
figures), and ``main_cpu_s_per_img``, the main process's CPU time (all its
threads) per image in the window: with ``workers=0`` that is the whole
pipeline's CPU cost, so ``1 / main_cpu_s_per_img`` estimates the rate of
one uncontended core; with workers it is the main process's share
(collation, preprocessor). ``pre_cpu_s_per_batch``: the process's CPU time
(all threads) inside the data preprocessor per batch; ``ops_per_batch``
(``--count-ops``): the torch operators other than views that the
preprocessor dispatches for one batch (counted before the window), on a GPU
about one kernel launch each.

Example::

    python tools/benchmark_data.py --workers 0 1 2
    python tools/benchmark_data.py --workers 0 1 2 --gpu-decode --device cuda
"""
import argparse
import functools
import inspect
import json
import os
import os.path as osp
import shutil
import sys
import tempfile
import time

import cv2
import numpy as np
import torch
from PIL import Image

PREFETCH_FACTOR = 2
MEAN = STD = [127.5, 127.5, 127.5]  # BootMAE: 0.5 / 0.5 on [0, 1]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Images/s of the BootMAE pretraining data pipeline.')
    parser.add_argument('--workers', type=int, nargs='+', default=[0, 1, 2],
                        help='data loader worker counts to time')
    parser.add_argument('--num-images', type=int, default=1000)
    parser.add_argument('--out-dir', default=None,
                        help='folder for the generated JPEGs (kept and '
                        'reused); default: a temporary folder, removed')
    parser.add_argument('--width', type=int, default=500)
    parser.add_argument('--height', type=int, default=375)
    parser.add_argument('--quality', type=int, default=90)
    parser.add_argument('--size', type=int, default=224, help='crop size')
    parser.add_argument('--batch-size', type=int, default=64)
    parser.add_argument('--skip-batches', type=int, default=None,
                        help='batches received before the clock starts '
                        '(default 2 * prefetch * max(workers, 1))')
    parser.add_argument('--measure-batches', type=int, default=20,
                        help='minimum batches in the timed window (raised '
                        'to 10 * prefetch * workers)')
    parser.add_argument('--mask', action=argparse.BooleanOptionalAction,
                        default=None, help='include BootMAEMaskGenerator '
                        '(default: when it is registered)')
    parser.add_argument('--mask-kwargs', type=json.loads, default={},
                        help='JSON dict of BootMAEMaskGenerator arguments')
    parser.add_argument('--gpu-decode', action='store_true',
                        help='time LoadImageBytes + GPUDecodeDataPreprocessor')
    parser.add_argument('--device', default=None,
                        help='device of the data preprocessor (default: '
                        'cuda if available, else cpu)')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--count-ops', action='store_true',
                        help='count the torch operators the preprocessor '
                        'dispatches per batch')
    args = parser.parse_args(argv)
    if min(args.workers) < 0 or args.num_images < 1 or args.batch_size < 1:
        parser.error('--workers must be >= 0, --num-images and --batch-size '
                     '>= 1')
    if args.device is None:
        args.device = 'cuda' if torch.cuda.is_available() else 'cpu'
    return args


def random_image(rng, width, height):
    """A smooth random colour field plus grain: JPEG sizes like photos."""
    img = np.full((height, width, 3), 128, np.float32)
    for cells, amplitude in ((4, 90), (16, 50), (64, 30), (160, 15)):
        shape = (max(2, cells * height // width), cells, 3)
        small = rng.uniform(-amplitude, amplitude, shape).astype(np.float32)
        img += cv2.resize(small, (width, height),
                          interpolation=cv2.INTER_CUBIC)
    grain = rng.uniform(6, 12)
    img += rng.standard_normal(img.shape, dtype=np.float32) * grain
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


def make_jpegs(img_dir, num, width, height, quality, seed):
    """Write ``img_XXXXXX.jpg`` files missing in ``img_dir``; return the
    mean file size in KB over the ``num`` files."""
    os.makedirs(img_dir, exist_ok=True)
    sizes = []
    for i in range(num):
        path = osp.join(img_dir, f'img_{i:06d}.jpg')
        if not osp.exists(path):
            rng = np.random.default_rng([seed, i])
            random_image(rng, width, height).save(path, quality=quality)
        sizes.append(osp.getsize(path))
    return float(np.mean(sizes)) / 1000


def mask_transform(args):
    """The mask generator's config dict, or None."""
    from mmpretrain.registry import TRANSFORMS
    cls = TRANSFORMS.get('BootMAEMaskGenerator')
    if args.mask is None:
        args.mask = cls is not None
    if not args.mask:
        return None
    if cls is None:
        raise SystemExit('--mask: BootMAEMaskGenerator is not registered in '
                         'mmpretrain TRANSFORMS (bootmae_mm.datasets.'
                         'transforms.masking)')
    kwargs = dict(args.mask_kwargs)
    params = inspect.signature(cls).parameters
    for name in ('img_size', 'input_size'):  # follow --size
        if name in params and name not in kwargs:
            kwargs[name] = args.size
    return dict(type='BootMAEMaskGenerator', **kwargs)


def build_pipeline(args):
    """The data pipeline as a list of config dicts."""
    from mmpretrain.registry import TRANSFORMS
    mask = mask_transform(args)
    if args.gpu_decode:
        pipeline = [dict(type='LoadImageBytes')]
        if TRANSFORMS.get('RandomResizedCropBox') is not None:
            pipeline.append(dict(type='RandomResizedCropBox',
                                 scale=(0.2, 1.0)))
    else:
        pipeline = [
            dict(type='LoadImageFromFile'),
            dict(
                type='RandomResizedCrop',
                scale=args.size,
                crop_ratio_range=(0.2, 1.0),
                backend='pillow',
                interpolation='bicubic'),
            dict(type='RandomFlip', prob=0.5),
        ]
    if mask is not None:
        pipeline.append(mask)
    if len(pipeline) > 1 and pipeline[1]['type'] == 'RandomResizedCropBox':
        pipeline.append(dict(type='PackInputs', meta_keys=(
            'img_path', 'ori_shape', 'crop_box', 'flip')))
    else:
        pipeline.append(dict(type='PackInputs'))
    return pipeline


def collate_fn(args):
    """``mask_collate`` on the GPU decode path (when registered), else
    ``pseudo_collate``."""
    from mmengine.dataset import pseudo_collate
    from mmengine.registry import FUNCTIONS
    collate = FUNCTIONS.get('mask_collate')
    if args.gpu_decode and collate is not None:
        return functools.partial(collate, inputs='list')
    return pseudo_collate


def count_ops(preprocessor, data):
    """The number of torch operators (views excepted) ``preprocessor``
    dispatches."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Count(TorchDispatchMode):
        num = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if not func.is_view:  # views launch no kernel
                Count.num += 1
            return func(*args, **(kwargs or {}))

    with Count():
        preprocessor(data, training=True)
    return Count.num


def build_preprocessor(args):
    from mmpretrain.registry import MODELS
    if args.gpu_decode:
        cfg = dict(type='GPUDecodeDataPreprocessor', size=args.size,
                   scale=(0.2, 1.0), mean=MEAN, std=STD)
    else:
        cfg = dict(type='mmengine.ImgDataPreprocessor', mean=MEAN, std=STD,
                   bgr_to_rgb=True)
    return MODELS.build(cfg).to(args.device)


def sync(device):
    if torch.device(device).type == 'cuda':
        torch.cuda.synchronize(device)


def measure(dataset, preprocessor, workers, args):
    """Time a steady-state window of ``workers`` loader workers."""
    from mmengine.dataset import InfiniteSampler
    from mmengine.dataset.utils import worker_init_fn
    skip = args.skip_batches
    if skip is None:
        skip = 2 * PREFETCH_FACTOR * max(workers, 1)
    num = max(args.measure_batches, 10 * PREFETCH_FACTOR * workers)
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=args.batch_size,
        sampler=InfiniteSampler(dataset, shuffle=True, seed=args.seed),
        num_workers=workers,
        collate_fn=collate_fn(args),
        pin_memory=torch.device(args.device).type == 'cuda',
        prefetch_factor=PREFETCH_FACTOR if workers > 0 else None,
        worker_init_fn=functools.partial(
            worker_init_fn, num_workers=workers, rank=0, seed=args.seed)
        if workers > 0 else None)
    batches = iter(loader)
    ops = None
    for i in range(skip):
        data = next(batches)
        if args.count_ops and i == skip - 1:
            ops = count_ops(preprocessor, data)
        preprocessor(data, training=True)
    sync(args.device)
    start, cpu_start = time.perf_counter(), time.process_time()
    images, pre_cpu = 0, 0.0
    for _ in range(num):
        data = next(batches)
        pre_start = time.process_time()
        out = preprocessor(data, training=True)
        pre_cpu += time.process_time() - pre_start
        images += out['inputs'].shape[0]
    sync(args.device)
    seconds = time.perf_counter() - start
    main_cpu_seconds = time.process_time() - cpu_start
    del batches  # shuts the workers down
    assert tuple(out['inputs'].shape[1:]) == (3, args.size, args.size)
    return dict(
        mode='gpu_decode' if args.gpu_decode else 'cpu',
        device=args.device,
        workers=workers,
        img_per_s=round(images / seconds, 1),
        img_per_s_per_worker=round(images / seconds / max(workers, 1), 1),
        batch=args.batch_size,
        n_measured=images,
        batches_skipped=skip,
        seconds=round(seconds, 2),
        main_cpu_s_per_img=round(main_cpu_seconds / images, 5),
        pre_cpu_s_per_batch=round(pre_cpu / num, 4),
        ops_per_batch=ops,
        mask=bool(args.mask),
        load_avg_1m=round(os.getloadavg()[0], 2),
    )


def main(argv=None):
    args = parse_args(argv)
    from mmpretrain.registry import DATASETS

    import bootmae_mm  # noqa: F401  (registers LoadImageBytes etc.)

    tmp_dir = None
    if args.out_dir is None:
        tmp_dir = tempfile.mkdtemp(prefix='bootmae_benchmark_data_')
        img_dir = tmp_dir
    else:
        img_dir = osp.join(
            args.out_dir, f'{args.num_images}x{args.width}x{args.height}'
            f'_q{args.quality}_seed{args.seed}')
    try:
        mean_kb = make_jpegs(img_dir, args.num_images, args.width,
                             args.height, args.quality, args.seed)
        dataset = DATASETS.build(
            dict(
                type='CustomDataset',
                data_prefix=img_dir,
                with_label=False,
                pipeline=build_pipeline(args)))
        if len(dataset) != args.num_images:
            raise SystemExit(f'{img_dir} holds {len(dataset)} images, '
                             f'expected --num-images {args.num_images}: '
                             'remove the other files')
        preprocessor = build_preprocessor(args)
        print(f'# {len(dataset)} JPEGs {args.width}x{args.height} q'
              f'{args.quality}, {mean_kb:.1f} KB on average, in {img_dir}; '
              f'pipeline: {[t["type"] for t in build_pipeline(args)]}',
              file=sys.stderr)
        for workers in args.workers:
            result = measure(dataset, preprocessor, workers, args)
            result['mean_jpeg_kb'] = round(mean_kb, 1)
            print(json.dumps(result), flush=True)
    finally:
        if tmp_dir is not None:
            shutil.rmtree(tmp_dir, ignore_errors=True)


if __name__ == '__main__':
    main()
