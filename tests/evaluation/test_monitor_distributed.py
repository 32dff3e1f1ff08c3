"""Under a 2-process gloo group every rank embeds its shard and the
gathered embeddings (and the monitor's scalars) equal one process's."""
import torch
import torch.multiprocessing as mp
from mmpretrain.registry import DATASETS, MODELS

import bootmae_mm  # noqa: F401
from bootmae_mm.evaluation import RepresentationMonitorHook, extract_features
from helpers.bootmae import tiny_bootmae_cfg
from helpers.monitor import folder_dataset, gather_worker
from helpers.repo import free_port


def test_two_ranks_gather_the_single_process_features(image_folder,
                                                      tmp_path):
    torch.manual_seed(0)
    model = MODELS.build(tiny_bootmae_cfg())
    model.init_weights()
    model.eval()
    model_file = tmp_path / 'model.pth'
    torch.save(model, model_file)
    # 15 of the 16 pictures: rank 0 gets 8, rank 1 gets 7 (uneven shards)
    data_cfg = folder_dataset(image_folder, indices=15)
    mp.spawn(gather_worker, args=(2, free_port(), str(model_file), data_cfg,
                                  str(tmp_path)), nprocs=2, join=True)

    dataset = DATASETS.build(data_cfg)
    feats, labels = extract_features(model, dataset, batch_size=2)
    assert feats.shape == (15, 64)
    assert sorted(set(labels.tolist())) == [0, 1]
    hook = RepresentationMonitorHook(bank=data_cfg, query=data_cfg, k=3,
                                     batch_size=3)
    hook.bank = hook.query = dataset
    scalars = hook.compute(model)
    for rank in (0, 1):
        got = torch.load(tmp_path / f'rank{rank}.pth', weights_only=False)
        # the same images in the same batches of 2 on one rank: the same
        # numbers up to the batch composition of the matmuls
        torch.testing.assert_close(got['feats'], feats, rtol=1e-5,
                                   atol=1e-5)
        assert torch.equal(got['labels'], labels)
        assert got['scalars']['knn/top1'] == scalars['knn/top1']
        assert abs(got['scalars']['rankme'] - scalars['rankme']) < 1e-3
        assert got['training'] is False  # the mode it was in is restored
