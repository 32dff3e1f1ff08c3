"""BootMAE (docs/method.md), read top to bottom: the build (encoder,
decoders and heads sized by the built encoder, the momentum target), the
step (encoder on the visible patches, two decoders, two losses) and the
momentum update."""
import re
from typing import Dict, List, Optional, Union

import torch
import torch.nn as nn
from mmpretrain.models import BaseSelfSupervisor
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample

from ...config_errors import ConfigValueError
from ..backbones.encoder_contract import adapt_encoder_cfg, check_encoder
from ..utils import build_from_encoder, freeze_as_buffers


def _unwrapped_name(name: str) -> str:
    """A parameter name without the wrappers that FSDP (use_orig_params)
    and activation checkpointing put around submodules."""
    return re.sub(r'_(fsdp|checkpoint)_wrapped_module\.', '', name)


@MODELS.register_module()
class BootMAE(BaseSelfSupervisor):
    """BootMAE: Bootstrapped Masked Autoencoders (Dong et al., ECCV 2022).

    MAE plus (1) a second target, the features that a momentum (EMA) copy
    of the encoder computes on the full image, and (2) two target-aware
    decoders that cross-attend to encoder features of the visible patches
    taken at the depth that suits their target (docs/method.md).

    The momentum copy lives in ``target_encoder`` as buffers (checkpointed,
    never optimized); ``MomentumTargetHook`` calls :meth:`update_target`
    after each optimizer step, and ``FeatureWeightRampHook`` sets
    ``feature_ramp``.

    The encoder is any backbone with BootMAE's encoder contract
    (:mod:`..backbones.encoder_contract`): ``BootMAEViT``, or mmpretrain's
    ViT-family backbones through the adapter of their family, which keeps
    their parameter names (README "Mixing with mmpretrain" has the table);
    another one is refused naming ``model.backbone`` and why. The decoders
    and heads take their sizes from the built encoder
    (:func:`..utils.build_from_encoder`): an explicit value that cannot work
    is refused naming its config key.

    Args:
        backbone (dict): the encoder, e.g. ``BootMAEViT``.
        pixel_decoder (dict): ``BootMAEPixelDecoder`` (context: low tap).
        pixel_head (dict): ``BootMAEPixelHead``.
        feature_decoder (dict, optional): ``BootMAEFeatureDecoder`` (context:
            high tap). None trains the pixel branch alone (MAE-style
            ablation), without a momentum target.
        feature_head (dict, optional): ``BootMAEFeatureHead``.
        feature_weight (float): lambda, the weight of the feature loss once
            the ramp is complete. Defaults to 1.
        num_masking_patches (int, optional): masked patches per image, as
            the masking transform makes them; when given, a step on an
            accelerator reads no value of the mask back to the host.
        compile (bool | dict): ``torch.compile`` the tensor part of the
            step (:meth:`tensor_losses`); a dict gives ``torch.compile``
            options. Defaults to False.
        data_preprocessor (dict, optional): defaults to
            ``SelfSupDataPreprocessor``.
        init_cfg (dict, optional): initialization config.
    """

    def __init__(self,
                 backbone: dict,
                 pixel_decoder: dict,
                 pixel_head: dict,
                 feature_decoder: Optional[dict] = None,
                 feature_head: Optional[dict] = None,
                 feature_weight: float = 1.0,
                 num_masking_patches: Optional[int] = None,
                 compile: Union[bool, dict] = False,
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None):
        if (feature_decoder is None) != (feature_head is None):
            raise ValueError('feature_decoder and feature_head are given '
                             'together (or both left out).')
        super().__init__(backbone=adapt_encoder_cfg(backbone),
                         data_preprocessor=data_preprocessor,
                         init_cfg=init_cfg)
        encoder = self.backbone
        check_encoder(encoder)
        self.pixel_decoder = build_from_encoder(
            pixel_decoder, 'model.pixel_decoder',
            dict(in_dims=encoder.embed_dims, context_dims=encoder.embed_dims,
                 patch_resolution=tuple(encoder.patch_resolution),
                 patch_size=encoder.patch_size),
            dict(num_heads=encoder.num_heads))
        self.pixel_head = build_from_encoder(
            pixel_head, 'model.pixel_head',
            dict(patch_size=encoder.patch_size))
        self.num_masking_patches = num_masking_patches
        self.set_compile(compile)
        self.build_feature_branch(
            feature_decoder, feature_head, feature_weight,
            None if feature_decoder is None else encoder.build_target())

    def build_feature_branch(self, feature_decoder: Optional[dict],
                             feature_head: Optional[dict],
                             feature_weight: float,
                             target: Optional[nn.Module]) -> None:
        """The feature decoder and head (sized by ``target``), the weight of
        the feature loss and the momentum ``target``: an encoder with the
        backbone's parameter names, held as buffers, an exact copy of the
        backbone to begin with. ``target=None``: no feature branch."""
        if feature_weight < 0:
            raise ConfigValueError(
                'feature_weight', feature_weight,
                f'feature_weight={feature_weight} must be >= 0.')
        self.feature_weight = feature_weight
        self.feature_ramp = 1.0  # set by FeatureWeightRampHook
        self.feature_decoder = self.feature_head = self.target_encoder = None
        if target is None:
            return
        width = target.embed_dims
        self.feature_decoder = build_from_encoder(
            feature_decoder, 'model.feature_decoder',
            dict(in_dims=width, context_dims=width, out_dims=width,
                 patch_resolution=tuple(target.patch_resolution)),
            dict(num_heads=target.num_heads, embed_dims=width))
        self.feature_head = MODELS.build(feature_head)
        self.target_encoder = freeze_as_buffers(target)
        self.target_encoder.eval()
        self._target_pairing = None  # found on the first update
        self.copy_online_to_target()

    def set_compile(self, compile: Union[bool, dict]) -> None:
        """Turn ``torch.compile`` of :meth:`tensor_losses` on (True or a
        dict of options) or off (False); it compiles on the next step."""
        if not isinstance(compile, (bool, dict)):
            raise TypeError(f'model.compile must be a bool or a dict of '
                            f'torch.compile options, got {compile!r}.')
        self.compile_cfg = dict(compile) if isinstance(compile, dict) \
            else ({} if compile else None)
        # the unbound function is compiled, and called with the model as an
        # argument, so that copies of the model share no state through it
        self._compiled_tensor_losses = None if self.compile_cfg is None \
            else torch.compile(type(self).tensor_losses, **self.compile_cfg)

    # ------------------------------------------------------------------
    # the step
    # ------------------------------------------------------------------
    def extract_feat(self, inputs: torch.Tensor):
        return self.backbone(inputs, mask=None)

    def loss(self, inputs: torch.Tensor, data_samples: List[DataSample],
             **kwargs) -> Dict[str, torch.Tensor]:
        """Returns ``loss_pixel``, ``loss_feature`` (already multiplied by
        the current feature weight) and ``feature_weight`` (logged only)."""
        imgs = inputs[0] if isinstance(inputs, (list, tuple)) else inputs
        mask = torch.stack([ds.mask for ds in data_samples]).bool()
        num_visible = self.num_visible(mask)
        if self._compiled_tensor_losses is None:
            losses = self.tensor_losses(imgs, mask, num_visible)
        else:
            losses = self._compiled_tensor_losses(self, imgs, mask,
                                                  num_visible)
        if self.with_target:
            # the weight changes every step: applied outside the compiled
            # part (no recompilation), made on the device (no host sync)
            weight = self.current_feature_weight
            losses['loss_feature'] = weight * losses['loss_feature']
            losses['feature_weight'] = imgs.new_full((), weight)
        return losses

    def num_visible(self, mask: torch.Tensor) -> int:
        """Visible patches per image. A host (CPU) mask is counted at every
        step, and must match ``num_masking_patches`` when given. On an
        accelerator with ``num_masking_patches`` given, the count is
        checked on the device (an asynchronous assert: no read back, a
        mismatch stops the run at its next synchronization); without it the
        mask is counted on the host."""
        num_patches = mask[0].numel()
        if self.num_masking_patches is not None and \
                mask.device.type != 'cpu':
            torch._assert_async(
                (mask.flatten(1).sum(1) == self.num_masking_patches).all(),
                f'model.num_masking_patches={self.num_masking_patches} '
                f'differs from the masks\' count of masked patches.')
            return num_patches - self.num_masking_patches
        counts = mask.flatten(1).sum(1)
        if not bool((counts == counts[0]).all()):
            raise ValueError('every image of a batch needs the same '
                             'number of masked patches.')
        num_masked = int(counts[0])
        if self.num_masking_patches not in (None, num_masked):
            raise ConfigValueError(
                'num_masking_patches', self.num_masking_patches,
                f'model.num_masking_patches={self.num_masking_patches} but '
                f'the masking transform masked {num_masked} of '
                f'{num_patches} patches.')
        return num_patches - num_masked

    def tensor_losses(self, imgs: torch.Tensor, mask: torch.Tensor,
                      num_visible: int) -> Dict[str, torch.Tensor]:
        """Tensor part of the step: ``loss_pixel`` and the unweighted
        ``loss_feature``. Reads nothing back to the host."""
        out = self.backbone(imgs, mask, num_visible)

        pred_pixels = self.pixel_decoder(out.latent, out.low_level, mask)
        losses = dict(loss_pixel=self.pixel_head.loss(pred_pixels, imgs, mask))
        if not self.with_target:
            return losses

        pred_features = self.feature_decoder(out.latent, out.high_level, mask)
        losses['loss_feature'] = self.feature_head.loss(
            pred_features, self.target_features(imgs), mask)
        return losses

    @property
    def current_feature_weight(self) -> float:
        """The weight of the feature loss at this step."""
        return self.feature_weight * self.feature_ramp

    def target_features(self, imgs: torch.Tensor) -> torch.Tensor:
        """The momentum target's features of every patch (high-level tap,
        no final norm, cls dropped), (B, N, D), without gradient."""
        # no_grad rather than inference_mode: the targets enter the loss's
        # autograd graph, which may not save inference tensors
        with torch.no_grad():
            return self.target_encoder.encode(imgs).high_level[:, 1:]

    # ------------------------------------------------------------------
    # the momentum target
    # ------------------------------------------------------------------
    @property
    def with_target(self) -> bool:
        return self.target_encoder is not None

    @torch.no_grad()
    def copy_online_to_target(self) -> None:
        """Make the momentum target an exact copy of the online encoder."""
        online = self.backbone.state_dict()
        for name, buf in self.target_encoder.named_buffers():
            if name in online:
                buf.copy_(online[name])

    def _target_pairs(self):
        """Matching (target, online) tensors of the momentum update.

        The pairing (owner module and buffer name, online parameter) is
        found once; the tensors are looked up on each call, since ``.to()``
        replaces buffers (parameters keep their identity). Buffers of the
        online encoder (e.g. relative position indices) are never
        averaged."""
        if self._target_pairing is None:
            online = {_unwrapped_name(n): p
                      for n, p in self.backbone.named_parameters()}
            fixed = {_unwrapped_name(n)
                     for n, _ in self.backbone.named_buffers()}
            pairing, unmatched = [], []
            for prefix, module in self.target_encoder.named_modules():
                for name in module._buffers:
                    key = _unwrapped_name(
                        f'{prefix}.{name}' if prefix else name)
                    param = online.get(key)
                    if param is None:
                        if key not in fixed:
                            unmatched.append(key)
                    elif param.requires_grad:
                        pairing.append((module, name, param))
            if unmatched:
                raise RuntimeError(f'momentum target: no online parameter '
                                   f'for the target tensors {unmatched}')
            self._target_pairing = pairing
        return ([module._buffers[name]
                 for module, name, _ in self._target_pairing],
                [param for _, _, param in self._target_pairing])

    @torch.no_grad()
    def update_target(self, decay: float) -> None:
        """``target = decay * target + (1 - decay) * online`` for every
        trained tensor, as one multi-tensor kernel:
        ``lerp(target, online, 1 - decay)``."""
        targets, sources = self._target_pairs()
        torch._foreach_lerp_(targets, sources, 1. - decay)

    def init_weights(self) -> None:
        """The target becomes a copy of the initialized online encoder;
        unless the whole model was loaded from a checkpoint (``init_cfg``
        of type ``Pretrained``), whose momentum target is kept."""
        super().init_weights()
        loaded = isinstance(self.init_cfg, dict) and \
            self.init_cfg.get('type') == 'Pretrained'
        if self.with_target and not loaded:
            self.copy_online_to_target()

    def train(self, mode: bool = True):
        super().train(mode)
        if self.with_target:
            self.target_encoder.eval()  # the target always runs in eval mode
        return self
