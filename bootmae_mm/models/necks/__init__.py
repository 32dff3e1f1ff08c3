from .feature_decoder import BootMAEFeatureDecoder
from .pixel_decoder import BootMAEPixelDecoder
from .target_aware_decoder import TargetAwareDecoder

__all__ = [
    'TargetAwareDecoder', 'BootMAEPixelDecoder', 'BootMAEFeatureDecoder'
]
