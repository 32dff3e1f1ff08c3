from .bootmae_heads import BootMAEFeatureHead, BootMAEPixelHead

__all__ = ['BootMAEPixelHead', 'BootMAEFeatureHead']
