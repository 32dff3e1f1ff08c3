import torch
import torch.nn as nn
import torch.nn.functional as F
from mmpretrain.models import VisionTransformer
from mmpretrain.registry import MODELS

from ...config_errors import ConfigValueError
from ..utils import sincos_pos_embed
from ..weight_init import init_transformer_weights_, xavier_uniform_parts_
from .visible_token_encoder import VisibleTokenEncoderMixin


class QVBiasQKV(nn.Linear):
    """The encoder attention's fused q/k/v projection with biases on q and
    v only, as the reference's attention (``q_bias``, ``v_bias``): the key
    part of ``bias`` is replaced by zeros in the forward, so it takes an
    exactly zero gradient and an optimizer (AdamW included) leaves it at
    zero. Same parameters (``weight``, ``bias``) as the ``nn.Linear`` it
    replaces, so checkpoints keep their names."""

    @property
    def qv_bias(self) -> torch.Tensor:
        """The bias the forward uses: ``cat(q, 0, v)``."""
        q_bias, _, v_bias = self.bias.chunk(3)
        return torch.cat((q_bias, torch.zeros_like(v_bias), v_bias))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight, self.qv_bias)


@MODELS.register_module()
class BootMAEViT(VisibleTokenEncoderMixin, VisionTransformer):
    """The BootMAE encoder: a plain ViT with a fixed 2-D sin-cos position
    embedding that encodes only the visible patches (docs/method.md section 2).

    Its parameters are named as in mmpretrain's ``VisionTransformer``, so its
    weights load into a stock ``VisionTransformer`` with no renaming.

    ``forward(x)`` behaves like ``VisionTransformer.forward`` (downstream
    use); ``forward(x, mask)`` encodes cls + visible tokens and returns the
    :class:`EncoderOutput` ``(latent, low_level, high_level)`` of the
    BootMAE encoder contract (:mod:`.encoder_contract`):

    - ``latent``: last block output after the final LayerNorm, (B, 1+V, D);
    - ``low_level``: output of block 0 (before any norm), (B, 1+V, D);
    - ``high_level``: output of the last block before the final LayerNorm.

    The attention has q and v biases and no k bias (:class:`QVBiasQKV`):
    the k part of mmpretrain's fused ``qkv.bias`` stays exactly zero.

    Args:
        arch (str | dict): any ``VisionTransformer`` arch ('deit-tiny',
            'deit-small', 'b', 'l', 'h', ... or a dict). Defaults to 'b'.
        img_size (int | tuple): input size; must be divisible by
            ``patch_size``. Defaults to 224.
        patch_size (int): patch size (e.g. 14 or 16). Defaults to 16.
        low_level_index (int): block whose output is the low-level tap.
            Defaults to 0 (the first block).
        with_cp (bool): activation checkpointing: each block's activations
            are recomputed in the backward pass instead of kept (less memory
            for ViT-L/H, about one more forward of compute). Only when
            training with gradients. Defaults to False.
        **kwargs: other ``VisionTransformer`` arguments (``out_type``,
            ``drop_path_rate``, ``final_norm``, ``init_cfg`` ...).
    """

    def __init__(self,
                 arch='b',
                 img_size=224,
                 patch_size: int = 16,
                 low_level_index: int = 0,
                 with_cp: bool = False,
                 out_type: str = 'raw',
                 **kwargs):
        if isinstance(arch, str) and arch.lower() not in self.arch_zoo:
            raise ConfigValueError(
                'arch', arch, f'arch="{arch}" is not a known ViT arch; choose '
                f'one of {sorted(self.arch_zoo)} or give a dict.')
        sizes = (img_size, img_size) if isinstance(img_size, int) else img_size
        if any(s % patch_size for s in sizes):
            raise ConfigValueError('img_size', img_size,
                                   f'img_size={img_size} is not divisible by '
                                   f'patch_size={patch_size}.')
        super().__init__(arch=arch, img_size=img_size, patch_size=patch_size,
                         out_type=out_type, low_level_index=low_level_index,
                         with_cp=with_cp, **kwargs)
        self.num_patches = self.patch_resolution[0] * self.patch_resolution[1]
        self.pos_embed.requires_grad = False  # fixed sin-cos
        for layer in self.layers:  # no key bias, as the reference
            if layer.attn.qkv.bias is not None:
                layer.attn.qkv.__class__ = QVBiasQKV

    def init_weights(self) -> None:
        """Without a checkpoint (``init_cfg`` not ``Pretrained``): the
        reference's initialization for pretraining from scratch
        (docs/method.md section 2b): xavier-uniform Linear weights (the
        fused qkv per q / k / v part) with zero biases, LayerNorm 1 / 0,
        the patch embedding xavier as if it were a Linear layer with a
        zero bias, the cls token normal with std 1e-6, and the fixed
        sin-cos position embedding."""
        super().init_weights()
        if isinstance(self.init_cfg, dict) and \
                self.init_cfg.get('type') == 'Pretrained':
            return
        with torch.no_grad():
            self.pos_embed.copy_(
                sincos_pos_embed(self.patch_resolution, self.embed_dims))
            init_transformer_weights_(self)
            proj = self.patch_embed.projection
            xavier_uniform_parts_(proj.weight.view(proj.weight.shape[0], -1))
            if proj.bias is not None:
                torch.nn.init.zeros_(proj.bias)
            if self.cls_token is not None:
                torch.nn.init.normal_(self.cls_token, std=1e-6)
