from .target_aware_decoders import (
    BootMAEFeatureDecoder,
    BootMAEPixelDecoder,
    TargetAwareBlock,
    TargetAwareDecoder,
)

__all__ = [
    'TargetAwareBlock', 'TargetAwareDecoder', 'BootMAEPixelDecoder',
    'BootMAEFeatureDecoder'
]
