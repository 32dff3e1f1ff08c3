"""The BootMAE encoder (docs/method.md section 2): the encoder contract
(:mod:`.encoder_contract`) for mmpretrain's ViT family, as a mixin, and
``BootMAEViT``, a plain ViT with a fixed sin-cos position embedding and q / v
attention biases."""
import copy
import inspect
from typing import Optional

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.utils.checkpoint as cp
from mmpretrain.models import VisionTransformer
from mmpretrain.registry import MODELS

from ...config_errors import ConfigValueError
from ..utils import gather_tokens, sincos_pos_embed, visible_ids
from ..weight_init import init_transformer_weights_, xavier_uniform_parts_
from .encoder_contract import EncoderOutput, check_patches_do_not_overlap


class VisibleTokenEncoderMixin:
    """Encodes the cls token plus the visible patches of an mmpretrain
    ViT-style backbone (``patch_embed``, ``cls_token``, ``pos_embed`` or
    None, ``drop_after_pos``, optional ``pre_norm``, ``layers``, ``ln1``
    with ``final_norm``), without changing its parameters: a checkpoint of
    the mixed class loads into the stock class.

    Put it before the backbone class; it takes two keyword arguments of its
    own and passes the others on.

    Args:
        low_level_index (int): block whose output is the low-level tap.
            Defaults to 0 (the first block).
        with_cp (bool): activation checkpointing of each block (only when
            training with gradients). Defaults to False.
    """

    #: the top-level parts that :meth:`encode` runs
    encoder_parts = ('patch_embed', 'cls_token', 'dist_token', 'pos_embed',
                     'pre_norm', 'layers', 'ln1', 'rel_pos_bias', 'rope')

    def __init__(self, *args, low_level_index: int = 0,
                 with_cp: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self._check_structure()
        num_blocks = len(self._main_blocks())
        if not 0 <= low_level_index < num_blocks:
            raise ConfigValueError(
                'low_level_index', low_level_index,
                f'low_level_index={low_level_index} is outside the '
                f'{num_blocks} blocks.')
        self.low_level_index = low_level_index
        self.with_cp = with_cp
        # the contract's attributes, where the stock class has none
        if not hasattr(self, 'num_heads'):
            self.num_heads = self.arch_settings['num_heads']
        if not hasattr(self, 'patch_size'):
            self.patch_size = self.patch_embed.projection.kernel_size[0]
        # mmpretrain draws the drop-path rates with numpy; torch.compile
        # takes numpy scalars for tensors and breaks the graph at every
        # `if drop_prob == 0.` of each block: store plain floats
        for module in self.modules():
            if isinstance(getattr(module, 'drop_prob', None), np.generic):
                module.drop_prob = float(module.drop_prob)

    def _check_structure(self) -> None:
        """Refuse what :meth:`encode` cannot run, naming the config key."""
        if getattr(self, 'cls_token', None) is None:
            raise ValueError(
                'model.backbone.with_cls_token=False: BootMAE needs a cls '
                'token (its decoders and the feature target keep it first); '
                'set with_cls_token=True.')
        check_patches_do_not_overlap(self.patch_embed.projection,
                                     'model.backbone.patch_cfg')

    def _main_blocks(self):
        """The blocks whose outputs are the taps."""
        return self.layers

    def forward(self, x: torch.Tensor, *args, **kwargs):
        """``forward(x, mask, num_visible)`` with a tensor ``mask`` (B, h, w)
        or (B, N), 1 = masked: :meth:`encode`; any other call is the stock
        class's forward (``MAEViT(x)`` still masks at random)."""
        mask = args[0] if args else kwargs.get('mask')
        if torch.is_tensor(mask):
            return self.encode(x, *args, **kwargs)
        stock_forward = super().forward
        if mask is None and 'mask' in kwargs and 'mask' not in \
                inspect.signature(stock_forward).parameters:
            del kwargs['mask']  # ``mask=None``: no masking, as stock
        return stock_forward(x, *args, **kwargs)

    def _block_args(self, ids: Optional[torch.Tensor]) -> tuple:
        """Extra arguments of every block for the tokens kept (cls first,
        then the patches ``ids``, all patches when None)."""
        return ()

    def _visible_tokens(self, x: torch.Tensor,
                        mask: Optional[torch.Tensor] = None,
                        num_visible: Optional[int] = None) -> tuple:
        """The extra tokens (cls, and DeiT's distillation token) and the
        visible patches with their position embedding, (B, E + V, D), and
        the kept patch indices (B, V) (None: all patches)."""
        B = x.shape[0]
        x, patch_resolution = self.patch_embed(x)
        if tuple(patch_resolution) != tuple(self.patch_resolution):
            raise ValueError(
                f'input gives a {patch_resolution} patch grid, the encoder '
                f'was built for {self.patch_resolution} (img_size).')
        extra = [self.cls_token]
        if getattr(self, 'dist_token', None) is not None:
            extra.append(self.dist_token)
        extra = torch.cat(extra, dim=1)
        if self.pos_embed is not None:
            # DeiT-III's and HiViT's embedding covers the patches only
            num_pos_extra = self.pos_embed.shape[1] - x.shape[1]
            x = x + self.pos_embed[:, num_pos_extra:]
            if num_pos_extra:
                extra = extra + self.pos_embed[:, :num_pos_extra]
        ids = None
        if mask is not None:
            ids = visible_ids(mask, num_visible)
            x = gather_tokens(x, ids)
        x = torch.cat((extra.expand(B, -1, -1), x), dim=1)
        x = self.drop_after_pos(x)
        x = getattr(self, 'pre_norm', torch.nn.Identity())(x)
        return x, ids

    def _contract_output(self, latent: torch.Tensor, low_level: torch.Tensor,
                         high_level: torch.Tensor) -> EncoderOutput:
        """The outputs as cls + visible tokens: other extra tokens (DeiT's
        distillation token) are left out."""
        num_extra = 1 + (getattr(self, 'dist_token', None) is not None)
        if num_extra > 1:
            latent, low_level, high_level = (
                torch.cat((t[:, :1], t[:, num_extra:]), dim=1)
                for t in (latent, low_level, high_level))
        return EncoderOutput(latent, low_level, high_level)

    def _checkpointing(self) -> bool:
        return self.with_cp and self.training and torch.is_grad_enabled()

    def _run_blocks(self, x: torch.Tensor, args: tuple) -> tuple:
        """Run :meth:`_main_blocks` on ``x`` (each block also given
        ``args``), checkpointing their activations where
        :meth:`_checkpointing` says so; returns ``(low_level, x)``: the
        output of block ``low_level_index`` and of the last block."""
        low_level = None
        checkpoint = self._checkpointing()
        for i, block in enumerate(self._main_blocks()):
            if checkpoint:
                x = cp.checkpoint(block, x, *args, use_reentrant=False)
            else:
                x = block(x, *args)
            if i == self.low_level_index:
                low_level = x
        return low_level, x

    def encode(self, x: torch.Tensor, mask: Optional[torch.Tensor] = None,
               num_visible: Optional[int] = None) -> EncoderOutput:
        """(latent, low_level, high_level) of cls + visible tokens, or of the
        whole image when ``mask`` is None.

        Args:
            x: images (B, C, H, W).
            mask: (B, h, w) or (B, N) patch mask, 1 = masked.
            num_visible: visible patches per image, when known, so that no
                value of the mask is read back to the host.
        """
        x, ids = self._visible_tokens(x, mask, num_visible)
        low_level, x = self._run_blocks(x, self._block_args(ids))
        latent = self.ln1(x) if self.final_norm else x
        return self._contract_output(latent, low_level, x)

    def build_target(self) -> torch.nn.Module:
        """A copy for the momentum target: no final norm (the target's
        output is the high-level tap), no initializer, no checkpointing;
        the caller freezes it and runs it in eval mode."""
        target = copy.deepcopy(self)
        if getattr(target, 'final_norm', False):
            target.final_norm = False
            del target.ln1
        target.with_cp = False
        target.init_cfg = None
        return target


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
