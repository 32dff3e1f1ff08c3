"""Evaluate a classification or segmentation config on a checkpoint.

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--cfg-options ..]
"""
import argparse
import os
import os.path as osp
import sys

sys.path.insert(0, osp.join(osp.dirname(osp.abspath(__file__)), '..'))

from mmengine.config import Config, DictAction  # noqa: E402

import bootmae_mm  # noqa: E402,F401  (shims + registration)
from bootmae_mm.engine.runner import (build_runner, check_data_paths,  # noqa
                                      explain_config_errors,
                                      infer_default_scope,
                                      setup_cpu_distributed)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Test a model')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir', help='the dir to save logs and results')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override config settings, e.g. model.backbone.arch=l')
    parser.add_argument('--launcher', default='none',
                        choices=['none', 'pytorch', 'slurm', 'mpi'])
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def main(argv=None):
    args = parse_args(argv)
    cfg = Config.fromfile(args.config)
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    cfg.launcher = args.launcher
    cfg.load_from = args.checkpoint
    cfg.work_dir = args.work_dir or cfg.get('work_dir') or osp.join(
        './work_dirs', osp.splitext(osp.basename(args.config))[0])
    cfg.default_scope = infer_default_scope(cfg)
    check_data_paths(cfg)
    setup_cpu_distributed(cfg, args.launcher)
    with explain_config_errors(cfg):
        runner = build_runner(cfg)
        runner.test()


if __name__ == '__main__':
    main()
