from .feature_head import BootMAEFeatureHead
from .pixel_head import BootMAEPixelHead

__all__ = ['BootMAEPixelHead', 'BootMAEFeatureHead']
