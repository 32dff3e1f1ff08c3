from .bootmae_data_preprocessor import BootMAEDataPreprocessor
from .gpu_decode import GPUDecodeDataPreprocessor
from .prepared_batch import PreparedBatch

__all__ = [
    'BootMAEDataPreprocessor', 'GPUDecodeDataPreprocessor', 'PreparedBatch'
]
