"""Collate a batch with its masks stacked into one tensor."""
from typing import Sequence

import torch
from mmengine.dataset import default_collate, pseudo_collate
from mmengine.registry import FUNCTIONS


@FUNCTIONS.register_module()
def mask_collate(data_batch: Sequence[dict], inputs: str = 'stack') -> dict:
    """Collate samples and stack their masks into one ``(B, h, w)`` tensor.

    Each sample's ``data_samples.mask`` (from ``BootMAEMaskGenerator`` via
    ``PackInputs``) is taken out of the data sample and the masks are
    stacked into ``batch['masks']``. The data loader's ``pin_memory=True``
    then pins that one tensor (it pins tensors in the batch dict, not those
    inside data samples), and the data preprocessor
    (:class:`~bootmae_mm.models.data_preprocessors.BootMAEDataPreprocessor`
    or ``GPUDecodeDataPreprocessor``) moves it with one non-blocking copy
    and gives each data sample its row back. A batch without masks is
    collated unchanged.

    Config: ``collate_fn=dict(type='mask_collate')`` (CPU pipeline) or
    ``dict(type='mask_collate', inputs='list')`` (GPU decode path).

    Args:
        data_batch (Sequence[dict]): Samples from the dataset.
        inputs (str): ``'stack'``: the rest is collated by mmengine's
            ``default_collate`` (images of one size); ``'list'``: by
            ``pseudo_collate`` (encoded files of different lengths).
            Defaults to 'stack'.
    """
    if inputs not in ('stack', 'list'):
        raise ValueError(f"mask_collate: `inputs` must be 'stack' or "
                         f"'list', got {inputs!r}")
    collate = default_collate if inputs == 'stack' else pseudo_collate
    samples = [sample.get('data_samples') for sample in data_batch]
    has_mask = [s is not None and 'mask' in s for s in samples]
    if not any(has_mask):
        return collate(data_batch)
    if not all(has_mask):
        missing = [
            getattr(s, 'metainfo', {}).get('img_path', f'sample {i}')
            for i, (s, has) in enumerate(zip(samples, has_mask)) if not has
        ]
        raise ValueError(f'mask_collate: no mask in {missing[:5]} while '
                         'other samples of the batch have one')
    masks = torch.stack([torch.as_tensor(s.pop('mask')) for s in samples])
    batch = collate(data_batch)
    batch['masks'] = masks
    return batch
