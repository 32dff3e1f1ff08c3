"""The segmentation parts (mmseg's registries): the only part of bootmae_mm
that imports mmseg. Importing it (the segmentation configs do, with
``custom_imports=dict(imports=['bootmae_mm.segmentation'])``) imports
``bootmae_mm`` first, whose compatibility shims make mmseg importable on
mmcv-lite (``bootmae_mm.compat``), then registers ``BootMAEViTSeg``."""
from .bootmae_vit_seg import BootMAEViTSeg  # noqa: F401


def is_segmentation_model(model_type: str) -> bool:
    """Whether mmseg's model registry knows ``model_type`` (tools use it to
    pick a config's default scope without importing mmseg themselves)."""
    from mmseg.registry import MODELS
    return MODELS.get(model_type) is not None
