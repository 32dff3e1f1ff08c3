"""The CPU pipeline's data preprocessor, with the masks moved in one copy,
and the marks of a batch that is already prepared (prefetching)."""
from typing import List, Optional

import torch
from mmpretrain.models.utils.data_preprocessor import SelfSupDataPreprocessor
from mmpretrain.registry import MODELS


class PreparedBatch(dict):
    """The output of a data preprocessor (``inputs`` on the device,
    ``data_samples``), marked so that the preprocessor passes it through
    unchanged when the model's ``train_step`` calls it again.

    The prefetching train loop (``bootmae_mm.feeding``) prepares the
    next batch while the current step runs and hands the model such a
    batch; the preprocessors that accept it say so with
    ``accepts_prepared_batches = True``.
    """


def attach_masks(data_samples: Optional[List], masks: Optional[torch.Tensor],
                 device, non_blocking: bool) -> None:
    """Copy the ``(B, h, w)`` masks that ``mask_collate`` stacked (and the
    loader pinned) to ``device`` in one copy, and give each data sample its
    row (a view of the device tensor) as ``mask``.

    Nothing happens when ``masks`` is None (a batch from another collate
    function, whose samples still hold their own masks).

    Args:
        data_samples (list, optional): The batch's data samples, already on
            the device.
        masks (Tensor, optional): ``(B, h, w)`` masks, on the host.
        device: The target device.
        non_blocking (bool): Copy asynchronously (from pinned memory).
    """
    if masks is None:
        return
    if data_samples is None or len(data_samples) != masks.shape[0]:
        num = None if data_samples is None else len(data_samples)
        raise ValueError(f'{masks.shape[0]} collated masks for {num} data '
                         'samples: collate with mask_collate')
    masks = masks.to(device, non_blocking=non_blocking)
    for sample, mask in zip(data_samples, masks.unbind(0)):
        sample.set_field(mask, 'mask')


@MODELS.register_module()
class BootMAEDataPreprocessor(SelfSupDataPreprocessor):
    """mmpretrain's ``SelfSupDataPreprocessor`` (stack, BGR -> RGB,
    normalize) that also moves the masks ``mask_collate`` stacked into
    ``data['masks']`` with one (non-blocking, from the loader's pinned
    memory) copy, instead of one small copy per data sample, and passes a
    :class:`PreparedBatch` from the prefetching train loop through.

    Batches from another collate function (masks inside the data samples)
    are handled as by ``SelfSupDataPreprocessor``.

    Args:
        **kwargs: ``SelfSupDataPreprocessor``'s arguments (``mean``,
            ``std``, ``to_rgb``, ``non_blocking``, ...).
    """

    accepts_prepared_batches = True

    def forward(self, data: dict, training: bool = False) -> dict:
        if isinstance(data, PreparedBatch):
            return data
        if not isinstance(data, dict):
            return super().forward(data, training)
        data = dict(data)
        masks = data.pop('masks', None)
        out = super().forward(data, training)
        attach_masks(out['data_samples'], masks, self.device,
                     self._non_blocking)
        return out
