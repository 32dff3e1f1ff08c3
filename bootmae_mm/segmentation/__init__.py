
from .bootmae_vit_seg import BootMAEViTSeg  # noqa: F401
