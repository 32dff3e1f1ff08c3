"""mmengine's DefaultSampler that can start an epoch part-way through and
gives every sample of an epoch its own seed."""
from typing import Iterator

import numpy as np
from mmengine.dataset import DefaultSampler
from mmpretrain.registry import DATA_SAMPLERS

from .seeded_dataset import SeededDataset


def sample_seed(seed: int, epoch: int, position: int) -> int:
    """The 32-bit seed of the sample at ``position`` of ``epoch``'s global
    order (the same on every rank and for any world size)."""
    return int(np.random.SeedSequence([seed, epoch, position])
               .generate_state(1)[0])


@DATA_SAMPLERS.register_module()
class ResumableSampler(DefaultSampler):
    """:class:`mmengine.dataset.DefaultSampler` for exact resumption.

    The order of the indices is DefaultSampler's (shuffled with
    ``seed + epoch``, padded, rank ``r`` of ``w`` taking positions
    ``r, r + w, ...`` of the global order), plus:

    - :meth:`skip`: the next iteration leaves out this rank's first ``n``
      indices. :class:`ExactResumeHook` calls it when a run resumes from a
      checkpoint taken in the middle of an epoch, so that the epoch goes on
      with the batches it had not trained on.
    - When the dataset is a :class:`SeededDataset`, every index is yielded as
      ``(index, seed)`` with ``seed = sample_seed(self.seed, epoch,
      position)``, ``position`` being the index's place in the epoch's global
      order. The sample's augmentations and mask then depend only on the run
      seed, the epoch and that position: not on the worker, the rank, the
      number of ranks, or an interruption. With another dataset plain indices
      are yielded.

    Args:
        dataset (Dataset): the dataset.
        shuffle (bool): shuffle the indices every epoch. Defaults to True.
        seed (int, optional): the shuffle / sample seed, the same on all
            ranks; None takes a random one from rank 0 (mmengine sets its
            numpy seed from the config's ``randomness.seed``).
        round_up (bool): pad the indices to a multiple of the world size.
            Defaults to True.
    """

    def __init__(self, dataset, shuffle: bool = True, seed=None,
                 round_up: bool = True) -> None:
        super().__init__(dataset, shuffle=shuffle, seed=seed,
                         round_up=round_up)
        self.seed_samples = isinstance(dataset, SeededDataset)
        self._skip = 0

    def skip(self, num_samples: int) -> None:
        """Leave out this rank's first ``num_samples`` indices in the next
        iteration (only)."""
        if not 0 <= num_samples <= self.num_samples:
            raise ValueError(f'ResumableSampler.skip({num_samples}): must be '
                             f'in 0 .. {self.num_samples}')
        self._skip = num_samples

    def __iter__(self) -> Iterator:
        indices = list(super().__iter__())
        positions = range(self.rank, self.rank + len(indices) *
                          self.world_size, self.world_size)
        start, self._skip = self._skip, 0
        pairs = zip(indices[start:], positions[start:])
        if not self.seed_samples:
            return (index for index, _ in pairs)
        return ((index, sample_seed(self.seed, self.epoch, position))
                for index, position in pairs)
