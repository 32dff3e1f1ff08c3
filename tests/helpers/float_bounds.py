"""How far two float32 computations of the same function may differ when
only the order of their sums differs (another implementation, thread
count or SIMD width): a bound derived from the numerics, not measured on
one machine."""
import math

import torch

EPS32 = torch.finfo(torch.float32).eps  # 2**-23


def rounding_bound(reference: torch.Tensor, ops: int, terms: int) -> float:
    """``ops * sqrt(terms) * eps * max|reference|``.

    Every output element is a chain of at most ``ops`` float32 operations
    (matmuls, norms, softmax, ...), each a sum of at most ``terms``
    products. The rounding error of a sum of ``n`` terms in another order
    grows like ``sqrt(n) * eps`` of the magnitude of its terms (and at
    most ``n * eps``); errors of successive operations add up. The terms'
    magnitude is taken as the output's largest (activations are layer
    normalized; no cancellation to much smaller values).
    """
    return ops * math.sqrt(terms) * EPS32 * float(reference.abs().max())


def assert_rounding_close(actual: torch.Tensor, expected: torch.Tensor,
                          ops: int, terms: int) -> None:
    """``actual`` equals ``expected`` up to :func:`rounding_bound`."""
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    bound = rounding_bound(expected, ops, terms)
    diff = float((actual - expected).abs().max())
    assert diff <= bound, (f'max difference {diff:.3g} exceeds the float32 '
                           f'rounding bound {bound:.3g} (ops={ops}, '
                           f'terms={terms})')
