"""The table and plot of the ablation study (``run_study.py``) from its
per-run results (``runs/<variant>_seed<N>.json``)."""
import glob
import json
import os
import os.path as osp
import statistics
import subprocess
import time

from study_configs import REPO, VARIANTS

#: (result key, column title) of the table
METRICS = (('knn_top1', 'k-NN top-1'), ('linear_top1', 'linear probe top-1'),
           ('finetune_top1', 'fine-tune top-1'), ('knn_top5', 'k-NN top-5'),
           ('rankme', 'RankMe'))
BEGIN, END = '<!-- study-table -->', '<!-- /study-table -->'


def load_results(runs: str) -> dict:
    """``{variant: [result, ...]}`` sorted by seed."""
    out = {}
    for path in sorted(glob.glob(osp.join(runs, '*.json'))):
        with open(path) as f:
            result = json.load(f)
        out.setdefault(result['variant'], []).append(result)
    for results in out.values():
        results.sort(key=lambda r: r['seed'])
    return out


def _mean_std(values) -> str:
    if len(values) < 2:
        return f'{values[0]:.1f}'
    return f'{statistics.mean(values):.1f} ± {statistics.stdev(values):.1f}'


def table(results: dict, variants) -> str:
    """Markdown: one row per variant, mean ± sample std over seeds."""
    head = '| variant | seeds | ' + ' | '.join(t for _, t in METRICS) + \
        ' | pretraining (min/run) |'
    lines = [head, '|' + '---|' * (len(METRICS) + 3)]
    for v in variants:
        rs = results.get(v)
        if not rs:
            continue
        cells = [_mean_std([r[k] for r in rs]) for k, _ in METRICS]
        minutes = statistics.mean(r['pretrain_seconds'] for r in rs) / 60
        cells.append('-' if v == 'random' else f'{minutes:.1f}')
        lines.append(f'| {v}: {VARIANTS[v][1]} | {len(rs)} | ' +
                     ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def plot(results: dict, variants, out_file: str) -> str:
    """k-NN top-1 of the monitor over pretraining: mean over seeds, with
    the range of the seeds shaded; the random encoder as a dashed line."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for v in variants:
        rs = results.get(v)
        if not rs:
            continue
        if v == 'random':
            mean = statistics.mean(r['knn_top1'] for r in rs)
            ax.axhline(mean, color='grey', ls='--', label='random encoder')
            continue
        steps = [s for s, _ in rs[0]['curve']]
        curves = np.array([[a for _, a in r['curve']] for r in rs
                           if len(r['curve']) == len(steps)])
        line, = ax.plot(steps, curves.mean(0), marker='o', ms=3, label=v)
        ax.fill_between(steps, curves.min(0), curves.max(0), alpha=0.15,
                        color=line.get_color())
    ax.set_xlabel('pretraining iteration')
    ax.set_ylabel('k-NN top-1 (%), val')
    ax.set_title('RepresentationMonitorHook k-NN during pretraining')
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    os.makedirs(osp.dirname(osp.abspath(out_file)), exist_ok=True)
    fig.savefig(out_file, dpi=100)
    plt.close(fig)
    return out_file


def _commit(out: str) -> str:
    """The commit the runs were made with: ``out/commit.txt`` (written
    when the study starts), else this checkout's."""
    path = osp.join(out, 'commit.txt')
    if osp.isfile(path):
        return open(path).read().strip()
    try:
        return subprocess.run(['git', 'rev-parse', '--short', 'HEAD'],
                              cwd=REPO, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return 'unknown'


def write_report(runs: str, out: str, docs, variants) -> dict:
    """Write ``table.md`` and ``ablation_knn.png`` into ``out``; with
    ``docs``, also the table into ``docs/ablation.md`` (between its
    markers) and the plot into ``docs/images/ablation_knn.png``."""
    results = load_results(runs)
    if not results:
        raise SystemExit(f'no results in {runs}: run the study first.')
    block = (f'{table(results, variants)}\n\nMeasured on a 2-core CPU '
             f'machine, {time.strftime("%Y-%m-%d")}, commit {_commit(out)}.')
    with open(osp.join(out, 'table.md'), 'w') as f:
        f.write(block + '\n')
    plot(results, variants, osp.join(out, 'ablation_knn.png'))
    if docs:
        plot(results, variants, osp.join(docs, 'images', 'ablation_knn.png'))
        path = osp.join(docs, 'ablation.md')
        text = open(path).read() if osp.isfile(path) else \
            f'# The BootMAE ablation in miniature\n\n{BEGIN}\n{END}\n'
        if BEGIN not in text or END not in text:
            raise SystemExit(f'{path}: no {BEGIN} ... {END} markers to put '
                             'the table between.')
        before, rest = text.split(BEGIN, 1)
        text = before + BEGIN + '\n' + block + '\n' + END + \
            rest.split(END, 1)[1]
        with open(path, 'w') as f:
            f.write(text)
    print(block)
    return results
