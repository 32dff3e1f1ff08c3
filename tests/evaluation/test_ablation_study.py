"""The ablation study's ``--quick`` mode (projects/bootmae_ablations/
run_study.py): every variant pretrains with the monitor on and is
measured; an interrupted study resumes; the table and plot are written."""
import json
import os.path as osp

from helpers.repo import REPO_ROOT, run_tool

SCRIPT = 'projects/bootmae_ablations/run_study.py'
VARIANTS = ('pixel-only', 'momentum-target', 'bootmae', 'mae',
            'mae+momentum', 'random')


def test_quick_study_runs_every_variant_and_resumes(tmp_path):
    out = tmp_path / 'study'
    docs = osp.join(REPO_ROOT, 'docs', 'ablation.md')
    docs_before = open(docs).read() if osp.isfile(docs) else None
    proc = run_tool([SCRIPT, '--quick', '--out', str(out), '--seeds', '0'],
                    timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:]
    for variant in VARIANTS:
        result = json.loads((out / 'runs' / f'{variant}_seed0.json')
                            .read_text())
        for key in ('knn_top1', 'linear_top1', 'finetune_top1'):
            assert 0 <= result[key] <= 100, (variant, key)
        assert result['rankme'] >= 1
        if variant == 'random':
            assert result['curve'] == [[0, result['knn_top1']]]
        else:  # the monitor: before training and after each of 2 epochs
            # of 3 iterations; its last point is the final k-NN
            assert [s for s, _ in result['curve']] == [0, 3, 6], variant
            assert result['curve'][-1][1] == result['knn_top1']
    table = (out / 'table.md').read_text()
    assert all(f'| {v}: ' in table for v in VARIANTS)
    assert (out / 'ablation_knn.png').stat().st_size > 10_000
    # --quick leaves the docs alone
    assert (open(docs).read() if osp.isfile(docs) else None) == docs_before

    # a run whose results exist is not run again; a lost one is
    (out / 'runs' / 'random_seed0.json').unlink()
    proc = run_tool([SCRIPT, '--quick', '--out', str(out), '--seeds', '0'],
                    timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:]
    started = [line for line in proc.stdout.splitlines() if ' start ' in line]
    assert len(started) == 1 and 'start random seed 0' in started[0]
    assert (out / 'runs' / 'random_seed0.json').is_file()
