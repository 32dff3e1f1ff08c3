"""bootmae-mm: BootMAE (ECCV 2022) for MMEngine / mmpretrain / mmsegmentation.

Importing this package (``custom_imports=dict(imports=['bootmae_mm'])``)
applies the stack's compatibility shims and registers every component in
mmpretrain's registries (and mmseg's for the segmentation parts).
"""
from . import compat

compat.apply()

from . import datasets, engine, models  # noqa: E402,F401
from . import segmentation  # noqa: E402,F401
from .model_zoo import register_models  # noqa: E402

register_models()

__version__ = '0.1.0'
