"""Weighted k-NN and RankMe against direct computations, and the feature
extraction of BootMAE's and mmpretrain's stock MAE encoders."""
import math

import numpy as np
import pytest
import torch
from mmpretrain.registry import MODELS

import bootmae_mm  # noqa: F401
from bootmae_mm.evaluation import knn_accuracy, pool, rankme
from bootmae_mm.evaluation.features import encoder_tokens, select_encoder
from helpers.bootmae import tiny_bootmae_cfg


def brute_force_knn(bank, bank_labels, queries, query_labels, k, t, classes):
    """Top-1 / top-5 (%) of the weighted vote, one query at a time in
    plain Python."""
    top1 = top5 = 0
    for q, label in zip(queries.tolist(), query_labels.tolist()):
        sims = []
        for b, b_label in zip(bank.tolist(), bank_labels.tolist()):
            cos = sum(x * y for x, y in zip(q, b)) / (
                math.sqrt(sum(x * x for x in q)) *
                math.sqrt(sum(y * y for y in b)))
            sims.append((cos, b_label))
        votes = [0.] * classes
        for cos, b_label in sorted(sims, reverse=True)[:k]:
            votes[b_label] += math.exp(cos / t)
        ranked = sorted(range(classes), key=lambda c: -votes[c])
        top1 += ranked[0] == label
        top5 += label in ranked[:5]
    n = len(query_labels)
    return 100. * top1 / n, 100. * top5 / n


@pytest.mark.parametrize('k,t', [(1, 0.07), (5, 0.1), (20, 0.5)])
def test_knn_matches_brute_force(k, t):
    g = torch.Generator().manual_seed(k)
    centres = torch.randn(7, 8, generator=g)
    bank_labels = torch.randint(0, 7, (60, ), generator=g)
    query_labels = torch.randint(0, 7, (40, ), generator=g)
    # clusters around class centres, at any scale (cosine ignores it)
    bank = (centres[bank_labels] + torch.randn(60, 8, generator=g)) * \
        torch.rand(60, 1, generator=g).add(0.5)
    queries = centres[query_labels] + 1.5 * torch.randn(40, 8, generator=g)
    expected = brute_force_knn(bank, bank_labels, queries, query_labels, k,
                               t, 7)
    got = knn_accuracy(bank, bank_labels, queries, query_labels, k, t)
    assert (got['top1'], got['top5']) == pytest.approx(expected)
    assert 0 < got['top1'] < got['top5'] < 100  # the case is not trivial
    # chunking the queries changes nothing
    from bootmae_mm.evaluation import knn_votes
    assert torch.allclose(knn_votes(bank, bank_labels, queries, 7, k, t),
                          knn_votes(bank, bank_labels, queries, 7, k, t,
                                    chunk=7))


def test_knn_weights_votes_by_similarity():
    bank = torch.tensor([[1., 0.], [0.9, 0.1], [0.2, 1.]])
    labels = torch.tensor([0, 0, 1])
    query = torch.tensor([[0.6, 0.8]])  # nearest to class 1's one item
    # two weaker votes for 0 lose against one close vote for 1 at a low T
    assert knn_accuracy(bank, labels, query, torch.tensor([1]), k=3,
                        temperature=0.07)['top1'] == 100.
    # at a high T the votes are nearly equal: the majority wins
    assert knn_accuracy(bank, labels, query, torch.tensor([1]), k=3,
                        temperature=100.)['top1'] == 0.


def test_rankme_matches_definition():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(50, 12, generator=g) @ torch.randn(12, 12, generator=g)
    s = np.linalg.svd(x.double().numpy(), compute_uv=False)
    p = s / s.sum() + 1e-7
    assert rankme(x) == pytest.approx(float(np.exp(-(p * np.log(p)).sum())),
                                      rel=1e-9)
    # a flat spectrum gives the dimension, one direction gives 1
    q, _ = torch.linalg.qr(torch.randn(50, 12, generator=g))
    assert rankme(3 * q) == pytest.approx(12, rel=1e-4)
    line = torch.randn(50, 1, generator=g) * torch.randn(1, 12, generator=g)
    assert rankme(line) == pytest.approx(1, rel=1e-4)
    with pytest.raises(ValueError, match='non-empty'):
        rankme(torch.zeros(0, 4))


def test_features_of_bootmae_and_stock_mae_encoders():
    torch.manual_seed(0)
    x = torch.randn(3, 3, 32, 32)
    bootmae = MODELS.build(tiny_bootmae_cfg())
    bootmae.init_weights()
    tokens = encoder_tokens(bootmae.backbone, x)
    assert tokens.shape == (3, 1 + 16, 64)
    assert torch.equal(pool(tokens, 'mean'), tokens[:, 1:].mean(1))
    assert torch.equal(pool(tokens, 'cls'), tokens[:, 0])
    # the momentum target starts as a copy; its tokens have no final norm
    target = encoder_tokens(select_encoder(bootmae, 'target'), x)
    assert torch.allclose(target, bootmae.backbone.encode(x).high_level,
                          atol=1e-6)

    mae = MODELS.build(dict(
        type='MAE',
        backbone=dict(type='MAEViT', arch=dict(
            embed_dims=32, num_layers=2, num_heads=2,
            feedforward_channels=64), img_size=32, patch_size=8),
        neck=dict(type='MAEPretrainDecoder', num_patches=16, patch_size=8,
                  embed_dim=32, decoder_embed_dim=32, decoder_depth=1,
                  decoder_num_heads=2),
        head=dict(type='MAEPretrainHead', patch_size=8,
                  loss=dict(type='PixelReconstructionLoss',
                            criterion='L2'))))
    mae.init_weights()
    mae.eval()
    tokens = encoder_tokens(mae.backbone, x)  # all 16 patches, unmasked
    assert tokens.shape == (3, 17, 32)
    assert torch.equal(tokens, mae.backbone(x, mask=None)[-1])
    with pytest.raises(ValueError, match='no momentum target'):
        select_encoder(mae, 'target')
    with pytest.raises(ValueError, match="pooling='max'"):
        pool(tokens, 'max')


def test_extraction_leaves_the_global_random_stream_alone(image_folder):
    from mmpretrain.registry import DATASETS

    from bootmae_mm.evaluation import extract_features
    from helpers.monitor import folder_dataset
    model = MODELS.build(tiny_bootmae_cfg())
    model.eval()
    dataset = DATASETS.build(folder_dataset(image_folder))
    torch.manual_seed(3)
    expected = torch.rand(4)
    torch.manual_seed(3)
    feats, labels = extract_features(model, dataset, batch_size=5)
    assert torch.equal(torch.rand(4), expected)
    assert feats.shape == (16, 64) and labels.tolist() == sorted(
        labels.tolist())  # in dataset order (folders of class 0, then 1)


def test_one_pass_gives_every_pooling(image_folder):
    """Several poolings from one pass equal one pass per pooling."""
    from mmpretrain.registry import DATASETS

    from bootmae_mm.evaluation import extract_features
    from helpers.monitor import folder_dataset
    model = MODELS.build(tiny_bootmae_cfg())
    model.eval()
    dataset = DATASETS.build(folder_dataset(image_folder))
    both, labels = extract_features(model, dataset, ('mean', 'cls'),
                                    batch_size=5)
    assert set(both) == {'mean', 'cls'}
    for kind in ('mean', 'cls'):
        feats, kind_labels = extract_features(model, dataset, kind,
                                              batch_size=5)
        assert torch.equal(both[kind], feats)
        assert torch.equal(labels, kind_labels)
    assert not torch.equal(both['mean'], both['cls'])
