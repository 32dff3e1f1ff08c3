"""Crop, resize (antialiased bicubic) and flip a batch of images of different
sizes in a few batched operations."""
from typing import List, Sequence, Union

import torch

# Bicubic with a = -0.5, the kernel torch's / PIL's antialiased resize uses
_A = -0.5


def _cubic(t: torch.Tensor) -> torch.Tensor:
    t = t.abs()
    near = ((_A + 2) * t - (_A + 3)) * t * t + 1
    far = ((_A * t - 5 * _A) * t + 8 * _A) * t - 4 * _A
    return torch.where(t <= 1, near, torch.where(t < 2, far,
                                                 torch.zeros_like(t)))


def _to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A small host tensor on ``device``; to CUDA through pinned memory and
    an asynchronous copy (a copy from pageable memory waits for the
    stream)."""
    if device.type == 'cuda':
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)


def resize_weights(lengths: torch.Tensor, out_size: int,
                   padded: int) -> torch.Tensor:
    """Antialiased bicubic resampling matrices for crops of ``lengths``.

    Row ``i`` of matrix ``b`` holds the weights of input positions
    ``0 .. padded - 1`` for output position ``i`` when a crop of
    ``lengths[b]`` pixels is resized to ``out_size``: the weights of torch's
    ``interpolate(..., mode='bicubic', antialias=True)`` (PIL's
    convolution: kernel widened by the downscaling factor, support
    truncated to the crop, each row normalized to sum 1); positions past
    ``lengths[b]`` get weight 0. The weights are computed on the band of
    at most ``K`` positions each row can reach and scattered into the
    matrix.

    Args:
        lengths (Tensor): ``(B,)`` crop lengths, ``0 < length <= padded``,
            on the device.
        out_size (int): Output length.
        padded (int): Number of input positions (>= max length).

    Returns:
        Tensor: ``(B, out_size, padded)`` float32 weights.
    """
    device = lengths.device
    length = lengths.to(torch.float64).view(-1, 1, 1)
    step = length / out_size
    stretch = step.clamp(min=1.0)
    support = 2.0 * stretch
    center = (torch.arange(out_size, dtype=torch.float64,
                           device=device).view(1, -1, 1) + 0.5) * step
    lo = torch.floor(center - support + 0.5).clamp(min=0)
    hi = torch.minimum(torch.floor(center + support + 0.5), length)
    # hi - lo <= 2 * support + 1, support <= 2 * max(padded / out, 1)
    taps = int(4 * max(padded / out_size, 1.0)) + 2
    x = lo + torch.arange(taps, dtype=torch.float64, device=device)
    weights = _cubic((x - center + 0.5) / stretch) * (x < hi)
    weights = weights / weights.sum(-1, keepdim=True)
    # positions past the band carry weight 0: clamping them onto a real
    # position and adding leaves it exact
    index = x.clamp(max=padded - 1).long()
    out = torch.zeros(length.shape[0], out_size, padded,
                      dtype=torch.float32, device=device)
    return out.scatter_add_(2, index, weights.to(torch.float32))


def batched_resized_crop(images: Sequence[torch.Tensor],
                         boxes: Union[torch.Tensor, Sequence[Sequence[int]]],
                         flips: Union[torch.Tensor, Sequence[bool]],
                         size: Sequence[int],
                         max_pixels: int = 1 << 26) -> torch.Tensor:
    """Crop ``boxes`` out of ``images``, resize them to ``size`` and flip
    the ``flips`` ones horizontally, as ``resized_crop`` + ``horizontal_flip``
    (bicubic, antialiased) per image would, but for the whole batch at once.

    The crops are copied into one zero-padded float tensor (one
    ``_foreach_copy_`` call), then resampled separably by two batched matrix
    products with per-image weight matrices (:func:`resize_weights`; a flip
    reverses the rows of the horizontal one). Crops are grouped, largest
    first, so that a group's padded tensor holds at most ``max_pixels``
    pixels per channel (one group for ordinary batches; a few for batches
    with very large images).

    The result is float, rounded and clamped to 0..255 like the uint8 result
    of the per-image path. Both compute the same weighted sums; the
    per-image path on the CPU rounds the horizontal pass to uint8 before the
    vertical one and uses fixed-point weights, so the two can differ by a
    grey level or so (see ``tests/feeding/test_gpu_decode.py``).

    Args:
        images (Sequence[Tensor]): ``(C, H_i, W_i)`` uint8 images on one
            device.
        boxes (Tensor | Sequence): ``(B, 4)`` int64 ``(top, left, height,
            width)``, or B such 4-tuples of ints (read on the host).
        flips (Tensor | Sequence[bool]): ``(B,)`` bool, flip horizontally.
        size (Sequence[int]): Output ``(H, W)``.
        max_pixels (int): Pixel budget per group (per channel).
            Defaults to 2**26.

    Returns:
        Tensor: ``(B, C, H, W)`` float32 in 0..255 (integer values).
    """
    device = images[0].device
    out_h, out_w = size
    channels = images[0].shape[0]
    # the grouping and slicing read the boxes on the host: given as lists
    # (as the data preprocessor has them), they need no read-back
    boxes_host = boxes.tolist() if isinstance(boxes, torch.Tensor) else [
        [int(v) for v in box] for box in boxes]
    if not isinstance(flips, torch.Tensor):
        flips = torch.tensor([bool(f) for f in flips])
    num = len(images)
    if num * max(b[2] for b in boxes_host) * max(
            b[3] for b in boxes_host) <= max_pixels:
        order = list(range(num))  # one group, in batch order
    else:
        order = sorted(range(num),
                       key=lambda i: -boxes_host[i][2] * boxes_host[i][3])
    groups: List[List[int]] = []
    group_h = group_w = 0
    for i in order:
        h, w = boxes_host[i][2:]
        new_h, new_w = max(group_h, h), max(group_w, w)
        if groups and (len(groups[-1]) + 1) * new_h * new_w <= max_pixels:
            groups[-1].append(i)
            group_h, group_w = new_h, new_w
        else:
            groups.append([i])
            group_h, group_w = h, w
    boxes = _to_device(torch.tensor(boxes_host, dtype=torch.int64), device)
    flips = _to_device(flips, device)
    out = None
    for group in groups:
        crops = []
        for i in group:
            top, left, h, w = boxes_host[i]
            crops.append(images[i][:, top:top + h, left:left + w])
        pad_h = max(c.shape[1] for c in crops)
        pad_w = max(c.shape[2] for c in crops)
        padded = torch.zeros(len(group), channels, pad_h, pad_w,
                             dtype=torch.float32, device=device)
        targets = [padded[j, :, :c.shape[1], :c.shape[2]]
                   for j, c in enumerate(crops)]
        torch._foreach_copy_(targets, crops)
        index = _to_device(torch.tensor(group), device)
        rows = resize_weights(boxes[index, 2], out_h, pad_h)
        cols = resize_weights(boxes[index, 3], out_w, pad_w)
        cols = torch.where(flips[index].view(-1, 1, 1), cols.flip(1), cols)
        result = torch.matmul(rows.unsqueeze(1), padded)
        result = torch.matmul(result, cols.transpose(1, 2).unsqueeze(1))
        if len(groups) == 1:
            out = result
        else:
            if out is None:
                out = result.new_empty(num, channels, out_h, out_w)
            out[index] = result
    return out.round_().clamp_(0, 255)
