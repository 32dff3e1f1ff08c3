"""Data and a 2-process (gloo) worker for the representation monitor
tests."""
import os

import torch
import torch.distributed as torch_dist


def folder_dataset(root, indices=None, with_label=True):
    """mmpretrain's ``CustomDataset`` on an ImageNet-layout folder of 32 px
    images, with the monitor's deterministic pipeline."""
    from bootmae_mm.evaluation import eval_pipeline
    cfg = dict(type='CustomDataset', data_root=str(root),
               with_label=with_label, pipeline=eval_pipeline(32))
    if indices is not None:
        cfg['indices'] = indices
    return cfg


def gather_worker(rank, world_size, port, model_file, data_cfg, out_dir):
    """Rank ``rank`` of a gloo group: embed this rank's shard of the data
    with the model saved in ``model_file``, gather, and save what this rank
    holds (features, labels, the monitor's scalars)."""
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port))
    torch_dist.init_process_group('gloo', rank=rank, world_size=world_size)
    try:
        from mmpretrain.registry import DATASETS

        from bootmae_mm.evaluation import (
            RepresentationMonitorHook,
            extract_features_dist,
        )
        model = torch.load(model_file, weights_only=False)
        model.eval()
        dataset = DATASETS.build(data_cfg)
        feats, labels = extract_features_dist(model, dataset, batch_size=2)
        hook = RepresentationMonitorHook(bank=data_cfg, query=data_cfg, k=3,
                                         batch_size=3)
        hook.bank = hook.query = dataset
        scalars = hook.compute(model)
        torch.save(dict(feats=feats, labels=labels, scalars=scalars,
                        training=model.training),
                   os.path.join(out_dir, f'rank{rank}.pth'))
    finally:
        torch_dist.destroy_process_group()
