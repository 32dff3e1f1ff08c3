from .bootmae_data_preprocessor import (
    BootMAEDataPreprocessor,
    PreparedBatch,
    attach_masks,
)

__all__ = ['BootMAEDataPreprocessor', 'PreparedBatch', 'attach_masks']
