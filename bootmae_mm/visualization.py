"""Pictures of a BootMAE model at work, shared by
``ReconstructionVisualizationHook`` and ``tools/visualize_reconstruction.py``:
a reconstruction grid and a plot of the training curves."""
import json
from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .models.heads.bootmae_heads import patch_mean_std, patchify

#: Column titles of :func:`make_reconstruction_grid`.
GRID_COLUMNS = ('original', 'masked input', 'prediction', 'pasted')


def _unpatchify(patches: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """(B, N, p*p, C) in raster order -> (B, C, h*p, w*p)."""
    B, _, pp, C = patches.shape
    p = int(round(pp ** 0.5))
    x = patches.reshape(B, h, w, p, p, C).permute(0, 5, 1, 3, 2, 4)
    return x.reshape(B, C, h * p, w * p)


@torch.no_grad()
def reconstruct(model, imgs: torch.Tensor, mask: torch.Tensor) -> dict:
    """Run BootMAE's encoder and pixel decoder on ``imgs`` with ``mask``.

    Args:
        model: a ``BootMAE`` (unwrapped), any mode; run as is.
        imgs: (B, C, H, W) images as the model sees them (after its data
            preprocessor).
        mask: (B, h, w) patch mask, 1 = masked, the same count per image.

    Returns:
        dict of (B, C, H, W) tensors in the model's input space:
        ``original``, ``prediction`` (the predicted patches; with a
        per-patch normalized target they are de-normalized with each
        original patch's mean and std) and ``pasted`` (the original with its
        masked patches replaced by the prediction), plus ``mask_pixels``
        (B, 1, H, W), 1 where masked.
    """
    mask = mask.bool()
    num_visible = int(mask[0].numel() - mask[0].sum())
    out = model.backbone(imgs, mask, num_visible)
    pred = model.pixel_decoder(out.latent, out.low_level, mask).float()
    head = model.pixel_head
    p = head.patch_size
    h, w = mask.shape[-2:]
    pred_patches = patchify(pred, p)
    if head.norm_pix:  # undo the target's normalization
        mean, std = patch_mean_std(patchify(imgs.float(), p))
        pred_patches = pred_patches * std + mean
    pred = _unpatchify(pred_patches, h, w)
    mask_pixels = F.interpolate(mask[:, None].float(), scale_factor=p,
                                mode='nearest')
    pasted = imgs * (1 - mask_pixels) + pred * mask_pixels
    return dict(original=imgs.float(), prediction=pred, pasted=pasted,
                mask_pixels=mask_pixels)


def _to_uint8(x: torch.Tensor, mean: Sequence[float],
              std: Sequence[float]) -> np.ndarray:
    """(B, C, H, W) normalized -> (B, H, W, C) uint8 with ``x * std +
    mean`` (per channel, on the 0..255 scale)."""
    mean = torch.as_tensor(mean, dtype=x.dtype).view(1, -1, 1, 1)
    std = torch.as_tensor(std, dtype=x.dtype).view(1, -1, 1, 1)
    x = (x.cpu() * std + mean).clamp(0, 255).round()
    return x.permute(0, 2, 3, 1).to(torch.uint8).numpy()


def make_reconstruction_grid(model,
                             imgs: torch.Tensor,
                             mask: torch.Tensor,
                             mean: Sequence[float],
                             std: Sequence[float],
                             scale: int = 1,
                             pad: int = 2) -> np.ndarray:
    """A picture of what the model reconstructs: one row per image, the
    columns of :data:`GRID_COLUMNS`:

    1. the original image;
    2. the masked input: masked patches grey (what the encoder sees);
    3. the predicted pixels of every patch (visible ones too, although only
       masked ones are trained), de-normalized per patch;
    4. the prediction pasted into the visible image.

    Args:
        model: a ``BootMAE`` (unwrapped).
        imgs: (B, C, H, W) images after the model's data preprocessor.
        mask: (B, h, w) patch mask, 1 = masked.
        mean, std: the data preprocessor's per-channel normalization
            (0..255 scale), to turn images back into pixels.
        scale (int): upscale every cell by this factor (nearest), so that
            small images stay visible. Defaults to 1.
        pad (int): white pixels between and around the cells. Defaults to 2.

    Returns:
        np.ndarray: uint8 RGB image (if the preprocessor converts to RGB) of
        height ``B * (H * scale + pad) + pad`` and width ``4 * (W * scale +
        pad) + pad``.
    """
    out = reconstruct(model, imgs, mask)
    grey = torch.zeros_like(out['original'])  # the mean colour
    masked = out['original'] * (1 - out['mask_pixels']) + \
        grey * out['mask_pixels']
    cols = [_to_uint8(x, mean, std) for x in
            (out['original'], masked, out['prediction'], out['pasted'])]
    B, H, W, C = cols[0].shape
    cell_h, cell_w = H * scale, W * scale
    grid = np.full((B * (cell_h + pad) + pad, 4 * (cell_w + pad) + pad, C),
                   255, dtype=np.uint8)
    for i in range(B):
        for j, col in enumerate(cols):
            cell = col[i].repeat(scale, 0).repeat(scale, 1)
            y, x = pad + i * (cell_h + pad), pad + j * (cell_w + pad)
            grid[y:y + cell_h, x:x + cell_w] = cell
    return grid


def read_scalar_log(path: str) -> dict:
    """Read an mmengine ``scalars.json`` (one JSON object per line) into
    ``{key: (steps, values)}``; lines that do not parse are skipped."""
    curves = {}
    with open(path) as f:
        for line in f:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            step = record.get('step', record.get('iter'))
            for key, value in record.items():
                if key in ('step', 'iter', 'epoch') or \
                        not isinstance(value, (int, float)):
                    continue
                steps, values = curves.setdefault(key, ([], []))
                steps.append(step)
                values.append(value)
    return curves


def plot_curves(scalars_json: str,
                out_file: str,
                keys: Optional[Sequence[str]] = None) -> str:
    """Plot the curves of an mmengine ``scalars.json`` against the
    iteration, one panel per key, into ``out_file`` (PNG, matplotlib's Agg
    backend).

    Args:
        scalars_json (str): the ``vis_data/scalars.json`` of a work dir.
        out_file (str): where to write the PNG.
        keys (Sequence[str], optional): which curves; defaults to BootMAE's
            (losses, feature weight, momentum, lr) and those of
            ``RepresentationMonitorHook`` (``knn/top1``, ``rankme``) that
            the log holds.
    """
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    curves = read_scalar_log(scalars_json)
    keys = [k for k in (keys or ('loss', 'loss_pixel', 'loss_feature',
                                 'feature_weight', 'momentum', 'lr',
                                 'knn/top1', 'rankme'))
            if k in curves]
    if not keys:
        raise ValueError(f'{scalars_json}: none of the curves to plot is '
                         'in the log.')
    cols = min(3, len(keys))
    rows = (len(keys) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3 * rows),
                             squeeze=False)
    for ax, key in zip(axes.flat, keys):
        steps, values = curves[key]
        ax.plot(steps, values, marker='o' if len(values) <= 30 else None,
                ms=3)
        ax.set_title(key)
        ax.set_xlabel('iteration')
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(keys):]:
        ax.axis('off')
    fig.tight_layout()
    fig.savefig(out_file, dpi=100)
    plt.close(fig)
    return out_file


@torch.no_grad()
def reconstruction_grid_from_batch(model, batch: dict,
                                   scale: Optional[int] = None) -> np.ndarray:
    """:func:`make_reconstruction_grid` of a collated batch (``inputs`` and
    ``data_samples`` with a ``mask``, as the training dataloader gives it),
    passed through the model's data preprocessor. Returns an RGB image.

    Args:
        model: a ``BootMAE`` (unwrapped); run in its current mode.
        batch (dict): ``default_collate`` output of pipeline results.
        scale (int, optional): cell upscaling; defaults to the smallest
            factor that makes cells at least 128 pixels high.
    """
    prep = model.data_preprocessor
    data = prep(batch, training=False)
    imgs = data['inputs']
    imgs = imgs[0] if isinstance(imgs, (list, tuple)) else imgs
    mask = torch.stack([ds.mask for ds in data['data_samples']])
    channels = imgs.shape[1]
    normalize = getattr(prep, '_enable_normalize', False)
    mean = prep.mean.flatten().tolist() if normalize else [0.] * channels
    std = prep.std.flatten().tolist() if normalize else [1.] * channels
    scale = scale or max(1, -(-128 // imgs.shape[-2]))
    grid = make_reconstruction_grid(model, imgs, mask.to(imgs.device), mean,
                                    std, scale=scale)
    if not getattr(prep, '_channel_conversion', False):
        grid = np.ascontiguousarray(grid[..., ::-1])  # the model saw BGR
    return grid
