"""k-NN evaluation of a BootMAE encoder against a random one of the same shape
(the code of ``RepresentationMonitorHook``, ``bootmae_mm/evaluation``).

    python tools/knn_eval.py CONFIG [CHECKPOINT] [--k 10] [--source online]

Features: the encoder's tokens on the whole (unmasked) image, after its
final norm; ``mean`` = mean of the patch tokens, ``cls`` = the class token;
L2-normalized. Each query image of the val split takes the weighted vote
(``exp(cosine / T)``, T = 0.07) of its ``k`` nearest train-split images.
The data is the config's ``train_dataloader.dataset`` (inside any wrapper)
with its ``split``
set to train (bank) and val (queries), read with a deterministic pipeline
(resize, centre crop to the config's size). Without CHECKPOINT, the
``last_checkpoint`` of ``work_dirs/<config name>`` is used.
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.join(osp.dirname(osp.abspath(__file__)), '..'))

import torch  # noqa: E402
from mmengine.config import Config, DictAction  # noqa: E402
from mmengine.registry import init_default_scope  # noqa: E402

import bootmae_mm  # noqa: E402,F401
from bootmae_mm.evaluation import extract_features, knn_accuracy  # noqa: E402,E501
from bootmae_mm.evaluation.features import POOLINGS, training_set_cfg  # noqa: E402,E501
from bootmae_mm.interop.checkpoint_loading import load_bootmae_encoder  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('config', help='a BootMAE pretraining config')
    parser.add_argument('checkpoint', nargs='?', help='checkpoint (default: '
                        'last_checkpoint of work_dirs/<config name>)')
    parser.add_argument('--k', type=int, default=10, help='neighbours')
    parser.add_argument('--temperature', type=float, default=0.07)
    parser.add_argument('--source', default='online',
                        choices=['online', 'target'],
                        help='which encoder of the checkpoint')
    parser.add_argument('--bank-split', default='train')
    parser.add_argument('--query-split', default='val')
    parser.add_argument('--batch-size', type=int, default=128)
    parser.add_argument('--seed', type=int, default=0,
                        help='seed of the random encoder')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings')
    return parser.parse_args(argv)


def default_checkpoint(config: str) -> str:
    from bootmae_mm.engine.checkpoint_pointer import find_resume_checkpoint
    work_dir = osp.join('work_dirs', osp.splitext(osp.basename(config))[0])
    found = find_resume_checkpoint(work_dir)
    if found is None:
        raise SystemExit(f'No CHECKPOINT given and no checkpoint in '
                         f'{work_dir}: train first (python tools/train.py '
                         f'{config}) or name one.')
    return found


def build_split(cfg: Config, split: str, size: int):
    """The config's training dataset, ``split`` and a test pipeline."""
    from mmpretrain.registry import DATASETS
    try:
        dataset = training_set_cfg(cfg.train_dataloader.dataset, size,
                                   require_split=True, split=split)
    except ValueError as e:
        raise SystemExit(f'{e}; k-NN needs a dataset with train and val '
                         'splits.')
    return DATASETS.build(dataset)


def evaluate(model, bank_set, query_set, args) -> dict:
    """k-NN top-1 (%) per pooling of ``model``'s backbone (into which the
    checkpoint's ``args.source`` encoder was loaded)."""
    model.eval()
    # one pass of the encoder per set serves every pooling
    bank, bank_labels = extract_features(
        model, bank_set, POOLINGS, 'online', args.batch_size)
    queries, query_labels = extract_features(
        model, query_set, POOLINGS, 'online', args.batch_size)
    return {kind: knn_accuracy(bank[kind], bank_labels, queries[kind],
                               query_labels, args.k,
                               args.temperature)['top1']
            for kind in POOLINGS}


def main(argv=None):
    args = parse_args(argv)
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    checkpoint = args.checkpoint or default_checkpoint(args.config)
    init_default_scope(cfg.get('default_scope', 'mmpretrain'))
    from mmpretrain.registry import MODELS

    size = cfg.model.backbone.get('img_size', 224)
    bank_set = build_split(cfg, args.bank_split, size)
    query_set = build_split(cfg, args.query_split, size)

    torch.manual_seed(args.seed)
    random_model = MODELS.build(cfg.model)
    random_model.init_weights()
    trained = MODELS.build(cfg.model)
    load_bootmae_encoder(trained.backbone, checkpoint, args.source)

    results = dict(random=evaluate(random_model, bank_set, query_set, args),
                   pretrained=evaluate(trained, bank_set, query_set, args))
    print(f'k-NN (k={args.k}, cosine, T={args.temperature}): '
          f'{len(bank_set)} {args.bank_split} images as the bank, '
          f'{len(query_set)} {args.query_split} images as queries, '
          f'{len(bank_set.CLASSES)} classes')
    print(f'{"encoder":<12}' + ''.join(f'{kind + " tokens":>14}'
                                       for kind in POOLINGS))
    for name, accs in results.items():
        print(f'{name:<12}' + ''.join(f'{accs[kind]:>13.1f}%'
                                      for kind in POOLINGS))
    print(f'random encoder top-1: {results["random"]["mean"]:.1f}%')
    print(f'pretrained encoder top-1: {results["pretrained"]["mean"]:.1f}% '
          f'({args.source} encoder of {checkpoint})')
    return results


if __name__ == '__main__':
    main()
