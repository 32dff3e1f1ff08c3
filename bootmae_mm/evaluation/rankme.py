"""RankMe (Garrido et al., ICML 2023): the effective rank of a set of
embeddings, a label-free measure of representation quality."""
import torch


def rankme(features: torch.Tensor, eps: float = 1e-7) -> float:
    """``exp(-sum_k p_k log p_k)`` with ``p_k = s_k / sum(s) + eps``, the
    ``s_k`` the singular values of the (N, D) embedding matrix (not
    centred, not normalized, as in the paper). Between 1 (all embeddings
    on one line) and ``min(N, D)`` (a flat spectrum).

    Args:
        features (Tensor): (N, D) embeddings.
        eps (float): the paper's epsilon. Defaults to 1e-7.
    """
    if features.dim() != 2 or min(features.shape) == 0:
        raise ValueError(f'rankme: needs a non-empty (N, D) matrix, got '
                         f'{tuple(features.shape)}.')
    s = torch.linalg.svdvals(features.double())
    p = s / s.sum() + eps
    return float(torch.exp(-(p * p.log()).sum()))
