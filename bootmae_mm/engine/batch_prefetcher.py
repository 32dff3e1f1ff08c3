"""Prepare the next batch on the device while the current step runs."""
from typing import Callable, Iterable, Iterator, Optional

import torch

from bootmae_mm.models.data_preprocessors import PreparedBatch


def _tensors(data) -> Iterator[torch.Tensor]:
    """Every tensor of a prepared batch (data samples' fields included)."""
    if isinstance(data, torch.Tensor):
        yield data
    elif isinstance(data, dict):
        for value in data.values():
            yield from _tensors(value)
    elif isinstance(data, (list, tuple)):
        for value in data:
            yield from _tensors(value)
    elif hasattr(data, 'all_values'):  # mmengine BaseDataElement
        for value in data.all_values():
            yield from _tensors(value)


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
            for tensor in _tensors(batch):
                if tensor.is_cuda:
                    tensor.record_stream(main)
        return batch
