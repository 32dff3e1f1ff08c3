from .bootmae_vit import BootMAEViT  # noqa: F401
from .bootmae_vit_linear_probe import BootMAEViTLinearProbe  # noqa: F401
from .encoder_contract import EncoderOutput, check_encoder  # noqa: F401
