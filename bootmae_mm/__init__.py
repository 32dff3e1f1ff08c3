"""bootmae-mm: BootMAE (ECCV 2022) for MMEngine / mmpretrain / mmsegmentation.

Importing this package (``custom_imports=dict(imports=['bootmae_mm'])``)
applies the stack's compatibility shims and registers the pretraining and
classification components in mmpretrain's registries: the method
(``models``, ``datasets``), the runtime (``engine``), GPU feeding
(``feeding``) and interoperability (``interop``: checkpoint loading, model
zoo, the stock-encoder adapters). It does not import mmseg: the
segmentation parts live in ``bootmae_mm.segmentation``, which the
segmentation configs import themselves
(``custom_imports=dict(imports=['bootmae_mm.segmentation'])``).
See docs/architecture.md.
"""
from . import compat

compat.apply()

from . import datasets, engine, evaluation, feeding, models  # noqa: E402,F401
from .interop import checkpoint_loading, stock_encoders  # noqa: E402,F401
from .interop.model_zoo import register_models  # noqa: E402

register_models()

__version__ = '0.1.0'
