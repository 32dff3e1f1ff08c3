"""The BootMAE paper's ablation in miniature: every variant of this project
(pixel-only, + momentum feature target, full BootMAE), mmpretrain's stock
MAE, MAE + our momentum target and a randomly initialized encoder, at one
small scale on the demo pictures, several seeds each; measured by weighted
k-NN, a linear probe and a short fine-tune, mean +- std over seeds, and the
k-NN that ``RepresentationMonitorHook`` logs during pretraining.

    python projects/bootmae_ablations/run_study.py --out /work/study_out

runs what is missing (a run whose ``runs/<variant>_seed<N>.json`` exists is
skipped, so an interrupted study resumes), then writes the table and the
plot into ``docs/ablation.md`` and ``docs/images/ablation_knn.png``.
``--report`` only rewrites those from the results; ``--quick`` is a tiny
rehearsal (seconds per run) that writes into ``--out`` only.
"""
import argparse
import json
import os
import os.path as osp
import subprocess
import sys
import time

HERE = osp.dirname(osp.abspath(__file__))
sys.path[:0] = [HERE, osp.dirname(osp.dirname(HERE))]

from study_configs import REPO, SCALES, VARIANTS, data_cfg  # noqa: E402
from study_report import _commit, write_report  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--out', default='work_dirs/ablation_study',
                        help='results, logs and work dirs')
    parser.add_argument('--quick', action='store_true',
                        help='tiny rehearsal; docs are not touched')
    parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    parser.add_argument('--variants', nargs='+', default=list(VARIANTS),
                        choices=list(VARIANTS))
    parser.add_argument('--jobs', type=int, default=2,
                        help='runs in parallel (one thread each)')
    parser.add_argument('--report', action='store_true',
                        help='only write the table and plot from results')
    parser.add_argument('--docs', default=osp.join(REPO, 'docs'),
                        help='where ablation.md and images/ live')
    parser.add_argument('--one', nargs=2, metavar=('VARIANT', 'SEED'),
                        help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def _dataset(root, split, scale, size):
    from mmpretrain.registry import DATASETS

    from bootmae_mm.evaluation import eval_pipeline
    return DATASETS.build(data_cfg(root, split, scale, eval_pipeline(size)))


def _images(model, dataset):
    """(preprocessed images, labels) of a whole dataset."""
    import torch
    from mmengine.dataset import default_collate
    imgs, labels = [], []
    for start in range(0, len(dataset), 256):
        batch = default_collate([dataset[i] for i in range(
            start, min(start + 256, len(dataset)))])
        inputs = model.data_preprocessor(batch, training=False)['inputs']
        imgs.append(inputs[0] if isinstance(inputs, list) else inputs)
        labels += [int(ds.gt_label) for ds in batch['data_samples']]
    return torch.cat(imgs), torch.tensor(labels)


def run_one(variant: str, seed: int, out: str, scale_name: str) -> dict:
    """Pretrain (unless ``random``) and evaluate one variant and seed."""
    import torch
    torch.set_num_threads(1)
    from mmengine.registry import init_default_scope
    from mmengine.runner import Runner
    from mmpretrain.registry import MODELS
    from study_configs import study_config
    from study_probes import fine_tune, knn, linear_probe

    import bootmae_mm  # noqa: F401
    from bootmae_mm.evaluation import extract_features, rankme
    from bootmae_mm.visualization import read_scalar_log

    scale = SCALES[scale_name]
    name = f'{variant}_seed{seed}'
    work_dir = osp.join(out, 'work', name)
    cfg = study_config(variant, seed, work_dir, osp.join(out, 'data'),
                       scale_name)
    result = dict(variant=variant, seed=seed, scale=scale, curve=[])
    start = time.time()
    if variant == 'random':
        init_default_scope('mmpretrain')
        torch.manual_seed(seed)
        model = MODELS.build(cfg.model)
        model.init_weights()
    else:
        runner = Runner.from_cfg(cfg)
        runner.train()
        model = runner.model
        curves = read_scalar_log(osp.join(runner.log_dir, 'vis_data',
                                          'scalars.json'))
        result['curve'] = list(zip(*curves['knn/top1']))
        result['monitor_seconds'] = sum(curves['monitor/time'][1])
    result['pretrain_seconds'] = time.time() - start
    model.eval()
    size = scale['img_size']
    root = osp.join(out, 'data')
    train_set = _dataset(root, 'train', scale, size)
    val_set = _dataset(root, 'val', scale, size)
    start = time.time()
    train_x, train_y = extract_features(model, train_set, batch_size=256)
    val_x, val_y = extract_features(model, val_set, batch_size=256)
    acc = knn(train_x, train_y, val_x, val_y)
    result.update(knn_top1=acc['top1'], knn_top5=acc['top5'],
                  rankme=rankme(train_x),
                  linear_top1=linear_probe(train_x, train_y, val_x, val_y))
    if variant == 'random':
        result['curve'] = [(0, acc['top1'])]
    train_imgs, train_labels = _images(model, train_set)
    val_imgs, val_labels = _images(model, val_set)
    steps = 300 if scale_name == 'full' else 5
    result['finetune_top1'] = fine_tune(
        model.backbone, train_imgs, train_labels, val_imgs, val_labels,
        steps=steps, seed=seed)
    result['eval_seconds'] = time.time() - start
    return result


def main(argv=None):
    args = parse_args(argv)
    scale_name = 'quick' if args.quick else 'full'
    runs = osp.join(args.out, 'runs')
    os.makedirs(osp.join(args.out, 'logs'), exist_ok=True)
    os.makedirs(runs, exist_ok=True)
    if args.one:
        variant, seed = args.one[0], int(args.one[1])
        result = run_one(variant, seed, args.out, scale_name)
        path = osp.join(runs, f'{variant}_seed{seed}.json')
        with open(path + '.tmp', 'w') as f:
            json.dump(result, f, indent=1)
        os.replace(path + '.tmp', path)  # written whole or not at all
        return result
    if not args.report:
        from bootmae_mm.datasets.demo_pictures import make_demo_dataset
        scale = SCALES[scale_name]
        make_demo_dataset(osp.join(args.out, 'data'), scale['num_train'],
                          scale['num_val'], scale['img_size'])
        commit = osp.join(args.out, 'commit.txt')
        if not osp.isfile(commit):
            with open(commit, 'w') as f:
                f.write(_commit(args.out) + '\n')
        _run_missing(args, scale_name, runs)
    docs = None if args.quick else args.docs
    return write_report(runs, args.out, docs, args.variants)


def _run_missing(args, scale_name, runs):
    """Run each missing (variant, seed) in its own process, ``--jobs`` at a
    time, with one thread each; fails if any run fails."""
    todo = [(v, s) for s in args.seeds for v in args.variants
            if not osp.isfile(osp.join(runs, f'{v}_seed{s}.json'))]
    env = dict(os.environ, OMP_NUM_THREADS='1', MKL_NUM_THREADS='1',
               PYTHONPATH=os.pathsep.join(
                   [REPO] + os.environ.get('PYTHONPATH', '').split(
                       os.pathsep)).rstrip(os.pathsep))
    running, failed = [], []
    while todo or running:
        while todo and len(running) < args.jobs:
            variant, seed = todo.pop(0)
            log = open(osp.join(args.out, 'logs',
                                f'{variant}_seed{seed}.log'), 'w')
            cmd = [sys.executable, osp.abspath(__file__), '--out', args.out,
                   '--one', variant, str(seed)] + \
                (['--quick'] if args.quick else [])
            print(f'{time.strftime("%H:%M:%S")} start {variant} seed {seed}',
                  flush=True)
            running.append((subprocess.Popen(cmd, env=env, stdout=log,
                                             stderr=subprocess.STDOUT),
                            log, variant, seed, time.time()))
        time.sleep(0.5)
        for item in list(running):
            proc, log, variant, seed, began = item
            if proc.poll() is None:
                continue
            running.remove(item)
            log.close()
            status = 'done' if proc.returncode == 0 else \
                f'FAILED ({proc.returncode}, see {log.name})'
            print(f'{time.strftime("%H:%M:%S")} {status} {variant} seed '
                  f'{seed} in {time.time() - began:.0f} s', flush=True)
            if proc.returncode:
                failed.append(f'{variant} seed {seed}')
    if failed:
        raise SystemExit(f'runs failed: {", ".join(failed)}')


if __name__ == '__main__':
    main()
