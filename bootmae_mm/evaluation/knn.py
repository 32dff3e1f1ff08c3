"""Weighted k-nearest-neighbour classification of embeddings, the protocol
of Wu et al. (CVPR 2018) that DINO and most self-supervised libraries
report: cosine similarity, each of the ``k`` nearest bank items votes for
its class with weight ``exp(similarity / T)``."""
from typing import Optional

import torch
import torch.nn.functional as F


def knn_votes(bank: torch.Tensor, bank_labels: torch.Tensor,
              queries: torch.Tensor, num_classes: int, k: int = 20,
              temperature: float = 0.07,
              chunk: int = 1024) -> torch.Tensor:
    """(Q, num_classes) summed vote weights of the ``k`` nearest bank items.

    Args:
        bank (Tensor): (N, D) bank embeddings (any scale: L2-normalized
            here, so that the dot product is the cosine similarity).
        bank_labels (Tensor): (N,) integer labels of the bank.
        queries (Tensor): (Q, D) query embeddings.
        num_classes (int): the number of classes.
        k (int): neighbours per query (at most N are used). Defaults to 20.
        temperature (float): T of the weights ``exp(sim / T)``.
            Defaults to 0.07.
        chunk (int): queries per similarity block (memory). Defaults to 1024.
    """
    bank = F.normalize(bank.float(), dim=1)
    queries = F.normalize(queries.float(), dim=1)
    bank_labels = bank_labels.to(bank.device).long()
    k = min(k, len(bank))
    votes = []
    for start in range(0, len(queries), chunk):
        sim, idx = (queries[start:start + chunk] @ bank.T).topk(k, dim=1)
        v = sim.new_zeros(len(sim), num_classes)
        v.scatter_add_(1, bank_labels[idx], (sim / temperature).exp())
        votes.append(v)
    return torch.cat(votes)


def knn_accuracy(bank: torch.Tensor, bank_labels: torch.Tensor,
                 queries: torch.Tensor, query_labels: torch.Tensor,
                 k: int = 20, temperature: float = 0.07,
                 num_classes: Optional[int] = None) -> dict:
    """Top-1 and top-5 accuracy (%) of the weighted k-NN vote:
    ``{'top1': ..., 'top5': ...}`` (top-5 is over ``min(5, num_classes)``
    classes; ties go to the lower class index).

    Args:
        bank, bank_labels, queries: see :func:`knn_votes`.
        query_labels (Tensor): (Q,) integer labels of the queries.
        k (int): neighbours. Defaults to 20.
        temperature (float): vote temperature. Defaults to 0.07.
        num_classes (int, optional): defaults to 1 + the largest label.
    """
    query_labels = query_labels.long().to(bank.device)
    if num_classes is None:
        num_classes = int(max(bank_labels.max(), query_labels.max())) + 1
    votes = knn_votes(bank, bank_labels, queries, num_classes, k,
                      temperature)
    ranked = votes.sort(dim=1, descending=True, stable=True).indices[:, :5]
    hits = ranked == query_labels[:, None]
    return dict(top1=float(hits[:, 0].float().mean() * 100),
                top5=float(hits.any(1).float().mean() * 100))
