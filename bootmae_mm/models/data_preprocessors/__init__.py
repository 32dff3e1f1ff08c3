from .gpu_decode import GPUDecodeDataPreprocessor

__all__ = ['GPUDecodeDataPreprocessor']
