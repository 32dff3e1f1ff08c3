
from .bytes_loading import LoadImageBytes  # noqa: F401
from .crop_box import RandomResizedCropBox  # noqa: F401
from .loading import RobustLoadImageFromFile  # noqa: F401
from .masking import BootMAEMaskGenerator  # noqa: F401
