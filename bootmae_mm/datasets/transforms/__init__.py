from .loading import RobustLoadImageFromFile  # noqa: F401
from .masking import BootMAEMaskGenerator  # noqa: F401
