"""GPU feeding, each part switched by its config key (docs/benchmarks.md):
the prefetching train loop (``train_cfg.type``), JPEG decode and the
random resized crop on the GPU (``model.data_preprocessor.type``) from
encoded bytes (``LoadImageBytes``, crop boxes drawn on the host by
``RandomResizedCropBox``)."""
from .bytes_loading import LoadImageBytes
from .crop_box import RandomResizedCropBox
from .gpu_decode import GPUDecodeDataPreprocessor
from .prefetch_loop import BatchPrefetcher, PrefetchEpochBasedTrainLoop

__all__ = [
    'LoadImageBytes', 'RandomResizedCropBox', 'GPUDecodeDataPreprocessor',
    'BatchPrefetcher', 'PrefetchEpochBasedTrainLoop'
]
