from typing import Optional, Tuple

import numpy as np
import torch
import torch.utils.checkpoint as cp
from mmpretrain.models import VisionTransformer
from mmpretrain.registry import MODELS

from ...config_errors import ConfigValueError
from ..utils import gather_tokens, mask_to_ids, sincos_pos_embed


@MODELS.register_module()
class BootMAEViT(VisionTransformer):
    """The BootMAE encoder: a plain ViT with a fixed 2-D sin-cos position
    embedding that encodes only the visible patches (BOOTMAE.md section 2).

    Its parameters are named as in mmpretrain's ``VisionTransformer``, so its
    weights load into a stock ``VisionTransformer`` with no renaming.

    ``forward(x)`` behaves like ``VisionTransformer.forward`` (downstream
    use); ``forward(x, mask)`` encodes cls + visible tokens and returns
    ``(latent, low_level, high_level)``:

    - ``latent``: last block output after the final LayerNorm, (B, 1+V, D);
    - ``low_level``: output of block 0 (before any norm), (B, 1+V, D);
    - ``high_level``: output of the last block before the final LayerNorm.

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
                         out_type=out_type, **kwargs)
        if not 0 <= low_level_index < self.num_layers:
            raise ValueError(f'low_level_index={low_level_index} is outside '
                             f'the {self.num_layers} blocks.')
        self.low_level_index = low_level_index
        self.with_cp = with_cp
        # mmpretrain draws the drop-path rates with numpy; torch.compile
        # takes numpy scalars for tensors and breaks the graph at every
        # `if drop_prob == 0.` of each block: store plain floats
        for module in self.modules():
            if isinstance(getattr(module, 'drop_prob', None), np.generic):
                module.drop_prob = float(module.drop_prob)
        self.num_patches = self.patch_resolution[0] * self.patch_resolution[1]
        self.pos_embed.requires_grad = False  # fixed sin-cos

    def init_weights(self) -> None:
        super().init_weights()
        if isinstance(self.init_cfg, dict) and \
                self.init_cfg.get('type') == 'Pretrained':
            return
        self.pos_embed.data.copy_(
            sincos_pos_embed(self.patch_resolution, self.embed_dims))
        w = self.patch_embed.projection.weight.data
        torch.nn.init.xavier_uniform_(w.view([w.shape[0], -1]))
        torch.nn.init.normal_(self.cls_token, std=.02)

    def forward(self, x: torch.Tensor, mask: Optional[torch.Tensor] = None,
                num_visible: Optional[int] = None):
        """Args:
            x: images (B, C, H, W).
            mask: (B, h, w) or (B, N) patch mask, 1 = masked; None for the
                standard ``VisionTransformer`` forward.
            num_visible: visible patches per image, when known, so that no
                value of the mask is read back to the host.
        """
        if mask is None:
            return super().forward(x)
        return self.encode(x, mask, num_visible)

    def encode(self, x: torch.Tensor, mask: Optional[torch.Tensor] = None,
               num_visible: Optional[int] = None
               ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(latent, low_level, high_level) of cls + visible tokens, or of the
        whole image when ``mask`` is None."""
        B = x.shape[0]
        x, patch_resolution = self.patch_embed(x)
        if tuple(patch_resolution) != tuple(self.patch_resolution):
            raise ValueError(
                f'input gives a {patch_resolution} patch grid, the encoder '
                f'was built for {self.patch_resolution} (img_size).')
        x = x + self.pos_embed[:, 1:]
        if mask is not None:
            mask = mask.flatten(1).bool()
            if num_visible is None:
                num_visible = int((~mask[0]).sum())
            ids_shuffle, _ = mask_to_ids(mask)
            x = gather_tokens(x, ids_shuffle[:, :num_visible])
        cls_token = (self.cls_token + self.pos_embed[:, :1]).expand(B, -1, -1)
        x = self.pre_norm(torch.cat((cls_token, x), dim=1))

        low_level = None
        checkpoint = self.with_cp and self.training and \
            torch.is_grad_enabled()
        for i, layer in enumerate(self.layers):
            if checkpoint:
                x = cp.checkpoint(layer, x, use_reentrant=False)
            else:
                x = layer(x)
            if i == self.low_level_index:
                low_level = x
        latent = self.ln1(x) if self.final_norm else x
        return latent, low_level, x
