"""Dataset wrapper that draws every sample's random augmentations and masks
from a seed chosen by the sampler, so that they do not depend on the
dataloader worker, the batch position or an interruption."""
import copy
import random
from contextlib import contextmanager

import numpy as np
import torch
from mmpretrain.registry import DATASETS


@contextmanager
def seeded_rngs(seed: int):
    """Seed ``random``, ``numpy.random`` and ``torch`` (CPU) with ``seed``
    for the block, then restore their previous states."""
    states = random.getstate(), np.random.get_state(), torch.get_rng_state()
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    try:
        yield
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])
        torch.set_rng_state(states[2])


@DATASETS.register_module()
class SeededDataset:
    """Draws each sample's pipeline randomness from its own seed.

    :class:`ResumableSampler` yields ``(index, seed)`` pairs, the seed a
    function of the sampler seed, the epoch and the sample's position in the
    epoch. For each pair this wrapper seeds ``random``, ``numpy.random`` and
    ``torch`` (all of mmcv / mmpretrain's transforms and
    :class:`BootMAEMaskGenerator` draw from them), runs the wrapped
    dataset's ``__getitem__`` (so also its refetch of another sample when a
    file is unreadable), and restores the previous states. The crop, flip and
    mask of a sample are then the same in a run resumed mid-epoch, with any
    number of dataloader workers, and on any number of ranks.

    A plain integer index reads the wrapped dataset unseeded. Other
    attributes (``metainfo``, ``get_data_info``, ``pipeline`` ...) are the
    wrapped dataset's.

    Args:
        dataset (dict | Dataset): the dataset, or its config.
    """

    def __init__(self, dataset):
        self.dataset = (DATASETS.build(dataset)
                        if isinstance(dataset, dict) else dataset)

    @property
    def metainfo(self) -> dict:
        return copy.deepcopy(self.dataset.metainfo)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index):
        if isinstance(index, tuple):
            index, seed = index
            with seeded_rngs(seed):
                return self.dataset[index]
        return self.dataset[index]

    def __getattr__(self, name):
        if name == 'dataset':  # not set yet (e.g. while unpickling)
            raise AttributeError(name)
        return getattr(self.dataset, name)
