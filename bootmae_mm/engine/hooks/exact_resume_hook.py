"""Makes a run resumed from any checkpoint, including one taken in the middle
of an epoch, train exactly as the run that was never interrupted."""
import logging
import random

import numpy as np
import torch
from mmengine.dist import broadcast_object_list
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmpretrain.registry import HOOKS

from bootmae_mm.datasets.resumable_sampler import ResumableSampler, sample_seed


@HOOKS.register_module()
class ExactResumeHook(Hook):
    """Exact resumption of an epoch-based run (docs/reliability.md).

    mmengine's resume restores the model (online and momentum target), the
    optimizer, the parameter schedulers, the message hub and the epoch /
    iteration counters, but (0.10.7) restarts a part-done epoch from its
    first batch and does not restore random states. This hook adds:

    - ``before_train``: sets the sampler's shuffle / sample seed to rank 0's
      run seed (``randomness.seed``); after a resume from a checkpoint taken
      ``k`` iterations into an epoch, makes the train sampler (a
      :class:`ResumableSampler`) skip the ``k * batch_size`` indices of this
      rank that were already trained on, so the epoch continues with batch
      ``k`` (``batch_idx`` seen by hooks then counts from 0 again in that
      epoch).
    - ``before_train_iter``: seeds ``random``, ``numpy.random`` and
      ``torch`` (all devices) in the training process from the run seed
      (``runner.seed``, rank-dependent with ``diff_rank_seed``) and the
      iteration, so in-model randomness (drop path, dropout) of an iteration
      does not depend on what ran before it.

    Per-sample randomness (crops, flips, masks) is made position-dependent
    by :class:`ResumableSampler` with a :class:`SeededDataset`; without them
    this hook warns that replayed batches will differ.

    Args:
        reseed_every_iter (bool): do the per-iteration seeding. Defaults to
            True.
    """

    priority = 'VERY_HIGH'

    def __init__(self, reseed_every_iter: bool = True) -> None:
        self.reseed_every_iter = reseed_every_iter

    def before_train(self, runner) -> None:
        loader = runner.train_dataloader
        sampler = loader.sampler
        if not isinstance(sampler, ResumableSampler):
            print_log(
                'ExactResumeHook: train_dataloader.sampler is '
                f'{type(sampler).__name__}, not ResumableSampler: a run '
                'resumed mid-epoch restarts the epoch from its first batch.',
                logger='current', level=logging.WARNING)
            return
        # The sampler's seed: the run seed of rank 0 (the config's
        # ``randomness.seed``), not mmengine's draw from the global numpy
        # state, which depends on what building the dataset consumed.
        seed = [runner.seed]
        broadcast_object_list(seed, src=0)
        sampler.seed = seed[0]
        if not sampler.seed_samples:
            print_log(
                'ExactResumeHook: train_dataloader.dataset is not a '
                'SeededDataset: batches replayed after a resume get other '
                'random crops and masks.', logger='current',
                level=logging.WARNING)
        done = runner.iter - runner.epoch * len(loader)
        if done > 0:
            sampler.skip(done * loader.batch_size)
            print_log(
                f'ExactResumeHook: resuming epoch {runner.epoch + 1} at '
                f'batch {done + 1} of {len(loader)}.', logger='current')

    def before_train_iter(self, runner, batch_idx: int,
                          data_batch=None) -> None:
        if not self.reseed_every_iter:
            return
        seed = sample_seed(runner.seed, 1 << 30, runner.iter)
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)
