"""The prefetching train loop: an epoch-based loop whose next batch is
prepared (by the model's data preprocessor, on a side CUDA stream) while
the current step runs."""
from typing import Callable, Iterable, Iterator, Optional

import torch
from mmengine.runner import EpochBasedTrainLoop
from mmpretrain.registry import LOOPS
from mmpretrain.utils import get_ori_model

from ..models.data_preprocessors import PreparedBatch


def batch_tensors(data) -> Iterator[torch.Tensor]:
    """Every tensor of a prepared batch (data samples' fields included), or
of any nest of dicts, lists, tuples and mmengine data elements."""
    if isinstance(data, torch.Tensor):
        yield data
    elif isinstance(data, dict):
        for value in data.values():
            yield from batch_tensors(value)
    elif isinstance(data, (list, tuple)):
        for value in data:
            yield from batch_tensors(value)
    elif hasattr(data, 'all_values'):  # mmengine BaseDataElement
        for value in data.all_values():
            yield from batch_tensors(value)


class BatchPrefetcher:
    """Iterate over a data loader's batches, each already run through
    ``preprocess`` (the model's data preprocessor), preparing batch ``k + 1``
    when :meth:`prepare_next` is called during step ``k``.

    On CUDA the preparation runs on a side stream, so the decode, crop and
    copies of the next batch overlap the step's kernels on the main stream;
    handing a batch out makes the main stream wait for the side stream and
    records every tensor of the batch on the main stream, so that the
    caching allocator does not reuse its memory before the step is done
    with it. On the CPU (or any other device) the same code runs without a
    side stream. The batches, their order and their content are those of
    iterating the loader and calling ``preprocess`` on each.

    Args:
        loader (Iterable): The data loader (one epoch).
        preprocess (Callable): ``preprocess(data, training=True)`` returns
            the prepared batch dict.
        device (torch.device): The device the batches are prepared on.
    """

    def __init__(self, loader: Iterable, preprocess: Callable,
                 device: torch.device) -> None:
        self._loader = iter(loader)
        self._preprocess = preprocess
        self._next: Optional[PreparedBatch] = None
        self._done = False
        self._stream = None
        if torch.device(device).type == 'cuda':
            self._stream = torch.cuda.Stream(device)
            # the model's buffers (mean, std) were written on the main
            # stream: order once against it, never again (that would wait
            # for the step it is meant to overlap)
            self._stream.wait_stream(torch.cuda.current_stream(device))

    def prepare_next(self) -> None:
        """Fetch the next batch from the loader and start preparing it (a
        no-op when one is already prepared or the loader is exhausted)."""
        if self._next is not None or self._done:
            return
        try:
            data = next(self._loader)
        except StopIteration:
            self._done = True
            return
        if self._stream is None:
            self._next = PreparedBatch(self._preprocess(data, training=True))
            return
        with torch.cuda.stream(self._stream):
            self._next = PreparedBatch(self._preprocess(data, training=True))

    def __iter__(self) -> 'BatchPrefetcher':
        return self

    def __next__(self) -> PreparedBatch:
        self.prepare_next()
        if self._next is None:
            raise StopIteration
        batch, self._next = self._next, None
        if self._stream is not None:
            main = torch.cuda.current_stream(self._stream.device)
            main.wait_stream(self._stream)
            for tensor in batch_tensors(batch):
                if tensor.is_cuda:
                    tensor.record_stream(main)
        return batch


@LOOPS.register_module()
class PrefetchEpochBasedTrainLoop(EpochBasedTrainLoop):
    """mmengine's ``EpochBasedTrainLoop`` that runs the model's data
    preprocessor on batch ``k + 1`` while step ``k`` runs.

    Each iteration calls the hooks and ``model.train_step`` as the parent
    does, but with a batch already prepared by the data preprocessor (a
    :class:`~bootmae_mm.models.data_preprocessors.PreparedBatch`, which the
    preprocessor passes through), and right after ``train_step`` has queued
    the step (before the ``after_train_iter`` hooks, whose logging waits for
    the step), it starts preparing the next batch
    (:class:`BatchPrefetcher`: on a side
    CUDA stream, so that the decode and crop of the GPU decode path overlap
    the step). The batches and their order are those of the parent loop;
    the preparation draws no random numbers when the crops come from the
    pipeline (``RandomResizedCropBox``; ``BootMAEDataPreprocessor`` draws
    none), so a run with this loop trains exactly as one without it, and
    resumes exactly (``ExactResumeHook``). ``data_batch`` seen by hooks is
    the prepared batch. Batches are prepared within an epoch: the first
    batch of an epoch is prepared when it is needed.

    The model's data preprocessor must accept prepared batches
    (``BootMAEDataPreprocessor``, ``GPUDecodeDataPreprocessor``).

    Args:
        runner (Runner): The runner.
        dataloader (DataLoader | dict): The training data loader.
        max_epochs (int): Total training epochs.
        **kwargs: Other ``EpochBasedTrainLoop`` arguments (``val_begin``,
            ``val_interval``, ``dynamic_intervals``).
    """

    def __init__(self, runner, dataloader, max_epochs: int, **kwargs):
        super().__init__(runner, dataloader, max_epochs, **kwargs)
        preprocessor = get_ori_model(self.runner.model).data_preprocessor
        if not getattr(preprocessor, 'accepts_prepared_batches', False):
            raise TypeError(
                'train_cfg.type=PrefetchEpochBasedTrainLoop needs a data '
                'preprocessor that accepts prepared batches '
                '(model.data_preprocessor.type=BootMAEDataPreprocessor or '
                'GPUDecodeDataPreprocessor), got '
                f'{type(preprocessor).__name__}')
        self._prefetcher = None

    def run_epoch(self) -> None:
        self.runner.call_hook('before_train_epoch')
        self.runner.model.train()
        preprocessor = get_ori_model(self.runner.model).data_preprocessor
        self._prefetcher = BatchPrefetcher(self.dataloader, preprocessor,
                                           preprocessor.device)
        for idx, data_batch in enumerate(self._prefetcher):
            self.run_iter(idx, data_batch)
        self._prefetcher = None
        self.runner.call_hook('after_train_epoch')
        self._epoch += 1

    def run_iter(self, idx, data_batch) -> None:
        self.runner.call_hook(
            'before_train_iter', batch_idx=idx, data_batch=data_batch)
        outputs = self.runner.model.train_step(
            data_batch, optim_wrapper=self.runner.optim_wrapper)
        if self._prefetcher is not None:
            self._prefetcher.prepare_next()
        self.runner.call_hook(
            'after_train_iter',
            batch_idx=idx,
            data_batch=data_batch,
            outputs=outputs)
        self._iter += 1
