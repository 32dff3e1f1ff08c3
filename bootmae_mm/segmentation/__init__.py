from .bootmae_vit_seg import BootMAEViTSeg  # noqa: F401


def is_segmentation_model(model_type: str) -> bool:
    """Whether mmseg's model registry knows ``model_type`` (tools use it to
    pick a config's default scope without importing mmseg themselves)."""
    from mmseg.registry import MODELS
    return MODELS.get(model_type) is not None
