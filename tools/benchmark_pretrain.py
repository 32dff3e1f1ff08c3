"""Images per second of one BootMAE pretraining step, on CPU or GPU.

What is timed is the real training step of a config, as the Runner runs it:
``model.train_step(data, optim_wrapper)`` (the data preprocessor on a batch
of random uint8 images with masks from the config's ``BootMAEMaskGenerator``,
the encoder on the visible patches, both decoders and losses, the momentum
encoder's forward, backward, the optimizer step of the config's optimizer
wrapper built by mmengine's ``build_optim_wrapper``) followed by the momentum
update exactly as ``MomentumTargetHook`` does it
(``model.update_target(decay)``). Batches are prepared on the host before the
clock starts (a DataLoader's job) and cycled.

Printed: one JSON line with img/s (batch / median step time over ``--steps``
steps after ``--warmup``; ``torch.cuda.synchronize()`` around each step on
GPU), the median step time, ``img_per_s_pipelined`` (another ``--steps``
steps back to back with one synchronization at the end, as a training loop
runs when the host queues work ahead of the GPU), peak memory
(``torch.cuda.max_memory_allocated`` on GPU; the process's max RSS on CPU),
GFLOP per image per step counted with
``torch.utils.flop_counter.FlopCounterMode`` over one whole eager step,
achieved TFLOP/s, the fraction of a measured matrix-product ceiling (bf16
8192^3 on GPU, fp32 2048^3 on CPU), device, torch version, git commit, dtype,
batch and the 1-minute load average.

Examples::

    python tools/benchmark_pretrain.py configs/bootmae_vit-b_800e.py \\
        --device cpu --batch-size 8 --dtype fp32
    python tools/benchmark_pretrain.py configs/bootmae_vit-b_800e.py \\
        --device cuda --batch-size 256 --dtype bf16 --compile
"""
import argparse
import copy
import functools
import json
import logging
import os
import os.path as osp
import resource
import statistics
import subprocess
import sys
import time

import numpy as np
import torch
from mmengine.config import DictAction

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

DTYPES = dict(fp32=None, bf16='bfloat16', fp16='float16')


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('config')
    p.add_argument('--arch', help='encoder arch override (b, l, h, ...); '
                   'the decoders follow its width and head count')
    p.add_argument('--batch-size', type=int, default=8)
    p.add_argument('--dtype', choices=sorted(DTYPES), default='fp32')
    p.add_argument('--device', default='cuda' if torch.cuda.is_available()
                   else 'cpu')
    p.add_argument('--steps', type=int, default=20)
    p.add_argument('--warmup', type=int, default=5)
    p.add_argument('--compile', action='store_true',
                   help='set model.compile=True (torch.compile)')
    p.add_argument('--with-cp', action='store_true',
                   help='activation checkpointing in the encoder')
    p.add_argument('--no-fused-optim', action='store_true',
                   help='optimizer fused=False (foreach AdamW)')
    p.add_argument('--no-flops', action='store_true',
                   help='skip the FLOP count')
    p.add_argument('--decay', type=float, default=0.9999,
                   help='EMA decay for the momentum update')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--cfg-options', nargs='+', action=DictAction,
                   help='override config keys, as in tools/train.py '
                   '(e.g. model.data_preprocessor.non_blocking=False)')
    return p.parse_args(argv)


def load_config(args):
    from mmengine.config import Config
    from mmpretrain.models import VisionTransformer
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    model = cfg.model
    if args.arch:
        arch = VisionTransformer.arch_zoo.get(args.arch.lower())
        if arch is None:
            raise SystemExit(f'--arch {args.arch}: not a VisionTransformer '
                             f'arch ({sorted(VisionTransformer.arch_zoo)})')
        model.backbone.arch = args.arch
        for key in ('pixel_decoder', 'feature_decoder'):
            if model.get(key) is not None:
                model[key].update(in_dims=arch['embed_dims'],
                                  num_heads=arch['num_heads'])
    if args.compile:
        model.compile = True
    if args.with_cp:
        model.backbone.with_cp = True
    return cfg


def mask_generator(cfg):
    from mmpretrain.registry import TRANSFORMS

    from bootmae_mm.datasets.dataset_wrappers import find_dataset_with
    _, dataset = find_dataset_with(cfg.train_dataloader.dataset, 'pipeline')
    for t in dataset.get('pipeline', []):
        if t['type'] == 'BootMAEMaskGenerator':
            return TRANSFORMS.build(copy.deepcopy(t)), t['img_size']
    raise SystemExit(f'{cfg.filename}: no BootMAEMaskGenerator in '
                     'train_dataloader.dataset.pipeline')


def make_batches(cfg, batch_size, device, n=4, seed=0):
    """``n`` host batches of random uint8 images with the config's masks,
    as the config's ``train_dataloader.collate_fn`` gives them (e.g.
    ``mask_collate``: masks stacked into one tensor), their tensors pinned
    when the step runs on GPU."""
    from mmengine.registry import FUNCTIONS
    from mmpretrain.structures import DataSample
    collate_cfg = dict(cfg.get('train_dataloader', {}).get(
        'collate_fn', None) or dict(type='default_collate'))
    collate = functools.partial(FUNCTIONS.get(collate_cfg.pop('type')),
                                **collate_cfg)
    gen, img_size = mask_generator(cfg)
    h, w = (img_size, img_size) if isinstance(img_size, int) else img_size
    rng = torch.Generator().manual_seed(seed)
    np.random.seed(seed)
    batches = []
    for _ in range(n):
        samples = []
        for _ in range(batch_size):
            img = torch.randint(0, 256, (3, h, w), dtype=torch.uint8,
                                generator=rng)
            mask = gen.transform(dict(img=np.zeros((h, w, 3), np.uint8)))
            sample = DataSample()
            sample.set_mask(torch.as_tensor(mask['mask']))
            samples.append(dict(inputs=img, data_samples=sample))
        batch = collate(samples)
        if device.type == 'cuda':
            batch = {k: v.pin_memory() if isinstance(v, torch.Tensor) else v
                     for k, v in batch.items()}
        batches.append(batch)
    return batches


def build_optim_wrapper(cfg, model, args):
    from mmengine.optim import build_optim_wrapper
    optim_cfg = copy.deepcopy(cfg.optim_wrapper)
    if args.dtype == 'fp32':
        optim_cfg.type = 'OptimWrapper'
        for key in ('loss_scale', 'dtype'):
            optim_cfg.pop(key, None)
    else:
        if not args.device.startswith('cuda'):
            raise SystemExit(f'--dtype {args.dtype}: mmengine\'s '
                             'AmpOptimWrapper needs a GPU; use --dtype fp32 '
                             'on the CPU.')
        optim_cfg.type = 'AmpOptimWrapper'
        optim_cfg.dtype = DTYPES[args.dtype]
        if args.dtype == 'fp16':
            optim_cfg.loss_scale = 'dynamic'
    if args.no_fused_optim:
        optim_cfg.optimizer.fused = False
    return build_optim_wrapper(model, optim_cfg), optim_cfg


def sync(device):
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def matmul_ceiling(device) -> float:
    """Measured TFLOP/s of one large matrix product (median of 10)."""
    if device.type == 'cuda':
        n, dtype = 8192, torch.bfloat16
    else:
        n, dtype = 2048, torch.float32
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    times = []
    for i in range(13):
        sync(device)
        t0 = time.perf_counter()
        a @ b
        sync(device)
        if i >= 3:
            times.append(time.perf_counter() - t0)
    return 2 * n ** 3 / statistics.median(times) / 1e12


def git_commit() -> str:
    root = osp.dirname(osp.dirname(osp.abspath(__file__)))
    try:
        commit = subprocess.run(['git', 'rev-parse', '--short', 'HEAD'],
                                cwd=root, capture_output=True, text=True,
                                check=True).stdout.strip()
        dirty = subprocess.run(['git', 'status', '--porcelain',
                                '--untracked-files=no'], cwd=root,
                               capture_output=True, text=True).stdout.strip()
        return commit + ('+dirty' if dirty else '')
    except (OSError, subprocess.CalledProcessError):
        return 'unknown'


def main(argv=None):
    args = parse_args(argv)
    from mmengine.logging import MMLogger
    from mmpretrain.registry import MODELS

    import bootmae_mm  # noqa: F401  (registers BootMAE, applies shims)
    MMLogger.get_current_instance().setLevel(logging.WARNING)  # one line out

    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    cfg = load_config(args)
    compile_cfg = cfg.model.pop('compile', False)
    model = MODELS.build(cfg.model)
    model.init_weights()
    model.to(device).train()
    optim_wrapper, optim_cfg = build_optim_wrapper(cfg, model, args)
    batches = make_batches(cfg, args.batch_size, device, seed=args.seed)

    def step(i):
        log_vars = model.train_step(batches[i % len(batches)], optim_wrapper)
        if getattr(model, 'with_target', False):
            model.update_target(args.decay)  # as MomentumTargetHook does
        return log_vars

    gflop = None
    if not args.no_flops:  # one eager step (before any compilation)
        from torch.utils.flop_counter import FlopCounterMode
        counter = FlopCounterMode(display=False)
        with counter:
            step(0)
        gflop = counter.get_total_flops() / args.batch_size / 1e9
    if compile_cfg:
        model.set_compile(compile_cfg)  # compiled on the next step

    if device.type == 'cuda':
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    t_first = time.perf_counter()
    for i in range(args.warmup + args.steps):
        sync(device)
        t0 = time.perf_counter()
        log_vars = step(i)
        sync(device)
        if i == 0:
            first_step_s = time.perf_counter() - t_first
        if i >= args.warmup:
            times.append(time.perf_counter() - t0)
    step_s = statistics.median(times)
    # the same number of steps back to back, synchronized only at the ends:
    # what a training loop gets when the host queues work ahead of the GPU
    sync(device)
    t0 = time.perf_counter()
    for i in range(args.steps):
        log_vars = step(i)
    sync(device)
    pipelined_s = (time.perf_counter() - t0) / args.steps
    if device.type == 'cuda':
        peak_gib = torch.cuda.max_memory_allocated(device) / 2 ** 30
        device_name = torch.cuda.get_device_name(device)
    else:
        peak_gib = resource.getrusage(
            resource.RUSAGE_SELF).ru_maxrss / 2 ** 20  # KiB on Linux
        device_name = f'cpu ({torch.get_num_threads()} threads)'
    ceiling = matmul_ceiling(device)
    img_s = args.batch_size / step_s
    tflops = gflop * img_s / 1e3 if gflop is not None else None
    result = dict(
        config=args.config, arch=args.arch or cfg.model.backbone.arch,
        device=device_name, dtype=args.dtype, batch=args.batch_size,
        compile=bool(compile_cfg), with_cp=args.with_cp,
        fused_optim=bool(optim_cfg.optimizer.get('fused', False)),
        optim_wrapper=optim_cfg.type,
        img_per_s=round(img_s, 2), step_ms_median=round(step_s * 1e3, 2),
        step_ms_min=round(min(times) * 1e3, 2),
        img_per_s_pipelined=round(args.batch_size / pipelined_s, 2),
        first_step_s=round(first_step_s, 2),
        peak_mem_gib=round(peak_gib, 3),
        peak_mem_kind='max_memory_allocated' if device.type == 'cuda'
        else 'max RSS',
        gflop_per_img=round(gflop, 2) if gflop is not None else None,
        achieved_tflops=round(tflops, 4) if tflops is not None else None,
        matmul_ceiling_tflops=round(ceiling, 3),
        fraction_of_ceiling=round(tflops / ceiling, 4)
        if tflops is not None else None,
        loss=round(float(log_vars['loss'].detach()), 5),
        steps=args.steps, warmup=args.warmup, torch=torch.__version__,
        commit=git_commit(), load_avg_1m=round(os.getloadavg()[0], 2))
    print(json.dumps(result))
    return result


if __name__ == '__main__':
    main()
