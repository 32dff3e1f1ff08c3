"""The CPU pipeline's data preprocessor, with the masks moved in one copy."""
from mmpretrain.models.utils.data_preprocessor import SelfSupDataPreprocessor
from mmpretrain.registry import MODELS

from .batched_masks import attach_masks
from .prepared_batch import PreparedBatch


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
