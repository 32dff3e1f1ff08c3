from .bootmae_vit import BootMAEViT  # noqa: F401
