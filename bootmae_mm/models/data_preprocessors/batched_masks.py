"""Move a batch's masks to the device in one copy."""
from typing import List, Optional

import torch


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
