from typing import Dict, List, Optional, Union

import torch
from mmpretrain.models import BaseSelfSupervisor
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample

from ...config_errors import ConfigValueError
from ..backbones import check_encoder, resolve_encoder_cfg
from .feature_branch import FeatureBranchMixin, check_feature_weight
from .follow_encoder import follow_encoder


@MODELS.register_module()
class BootMAE(FeatureBranchMixin, BaseSelfSupervisor):
    """BootMAE: Bootstrapped Masked Autoencoders (Dong et al., ECCV 2022).

    MAE plus (1) a second target, the features that a momentum (EMA) copy
    of the encoder computes on the full image, and (2) two target-aware
    decoders that cross-attend to encoder features of the visible patches
    taken at the depth that suits their target (docs/method.md).

    The momentum copy lives in ``target_encoder`` as buffers (checkpointed,
    never optimized); ``MomentumTargetHook`` updates it after each optimizer
    step through :meth:`update_target`, and ``FeatureWeightRampHook`` sets
    ``feature_ramp``.

    **The encoder contract.** BootMAE takes any backbone that provides
    (:mod:`bootmae_mm.models.backbones.encoder_contract`):

    - ``encode(x, mask, num_visible)`` (and ``forward`` with a tensor mask)
      returning the named tuple ``EncoderOutput(latent, low_level,
      high_level)`` of the cls token and the *visible* patches only;
    - ``low_level`` / ``high_level``: block outputs with no final norm
      (``latent`` is the last block after the final norm, if any);
    - ``build_target()``: the copy that becomes the momentum target (same
      parameter names), whose ``encode(x).high_level`` is the feature
      target;
    - ``embed_dims``, ``num_heads``, ``patch_size``, ``patch_resolution``.

    ``BootMAEViT`` provides it; mmpretrain's ViT-family backbones
    (``VisionTransformer`` and its subclasses, ``ViTEVA02``, ``BEiTViT``,
    ``RevVisionTransformer``, ``HiViT`` ...) are taken as they are, through
    the adapter of their family, which keeps their parameter names (their
    checkpoints load back into the stock class; README "Mixing with
    mmpretrain" has the table). Another backbone is refused at build time,
    naming ``model.backbone`` and what it lacks or why it cannot work.

    **Decoders follow the encoder.** Both decoders take ``in_dims``,
    ``context_dims``, ``num_heads`` and ``patch_resolution`` from the built
    encoder, the pixel decoder and head its ``patch_size``, the feature
    decoder its width (``embed_dims``, ``out_dims``: the target is the
    encoder's features). An explicit value wins where it can work (heads,
    decoder width); one that cannot (another ``in_dims``, grid or patch
    size) is refused naming the config key.

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
            the masking transform makes them; when given, a step reads no
            value of the mask back to the host (checked on the first step).
        compile (bool | dict): ``torch.compile`` the tensor part of the
            step (encoder, both decoders, momentum encoder, both losses);
            a dict gives ``torch.compile`` options. Defaults to False.
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
        check_feature_weight(feature_weight)
        if (feature_decoder is None) != (feature_head is None):
            raise ValueError('feature_decoder and feature_head are given '
                             'together (or both left out).')
        super().__init__(backbone=resolve_encoder_cfg(backbone),
                         data_preprocessor=data_preprocessor,
                         init_cfg=init_cfg)
        check_encoder(self.backbone)
        pixel_decoder, pixel_head, feature_decoder = follow_encoder(
            self.backbone, pixel_decoder, pixel_head, feature_decoder)
        self.pixel_decoder = MODELS.build(pixel_decoder)
        self.pixel_head = MODELS.build(pixel_head)
        self.feature_weight = feature_weight
        self.feature_ramp = 1.0
        self.num_masking_patches = num_masking_patches
        self._mask_checked = False
        self.set_compile(compile)
        if feature_decoder is not None:
            self.build_feature_branch(feature_decoder, feature_head,
                                      self.backbone.build_target(),
                                      feature_weight)
        else:
            self.feature_decoder = self.feature_head = None
            self.target_encoder = None

    # ------------------------------------------------------------------
    # forward
    # ------------------------------------------------------------------
    def extract_feat(self, inputs: torch.Tensor):
        return self.backbone(inputs, mask=None)

    def _num_visible(self, mask: torch.Tensor) -> int:
        num_patches = mask[0].numel()
        if self.num_masking_patches is None or not self._mask_checked:
            counts = mask.flatten(1).sum(1)
            if not bool((counts == counts[0]).all()):
                raise ValueError('every image of a batch needs the same '
                                 'number of masked patches.')
            num_masked = int(counts[0])
            if self.num_masking_patches not in (None, num_masked):
                raise ConfigValueError(
                    'num_masking_patches', self.num_masking_patches,
                    f'model.num_masking_patches={self.num_masking_patches} '
                    f'but the masking transform masked {num_masked} of '
                    f'{num_patches} patches.')
            if self.num_masking_patches is None:
                return num_patches - num_masked
            self._mask_checked = True
        return num_patches - self.num_masking_patches

    def set_compile(self, compile: Union[bool, dict]) -> None:
        """Turn ``torch.compile`` of the step's tensor part on (True or a
        dict of ``torch.compile`` options) or off (False). Compilation
        happens on the next step."""
        if not isinstance(compile, (bool, dict)):
            raise TypeError(f'model.compile must be a bool or a dict of '
                            f'torch.compile options, got {compile!r}.')
        # None: eager; a dict (maybe empty): torch.compile options
        self.compile_cfg = dict(compile) if isinstance(compile, dict) \
            else ({} if compile else None)
        self._compiled_losses = None

    def _step_losses(self):
        """The function that computes the raw losses (compiled or not)."""
        if self.compile_cfg is None:
            return type(self)._losses
        if self._compiled_losses is None:
            # the unbound function: the model is an argument, so copies of
            # the model share no state through it
            self._compiled_losses = torch.compile(type(self)._losses,
                                                  **self.compile_cfg)
        return self._compiled_losses

    def _losses(self, imgs: torch.Tensor, mask: torch.Tensor,
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

    def loss(self, inputs: torch.Tensor, data_samples: List[DataSample],
             **kwargs) -> Dict[str, torch.Tensor]:
        """Returns ``loss_pixel``, ``loss_feature`` (already multiplied by
        the current feature weight) and ``feature_weight`` (logged only)."""
        imgs = inputs[0] if isinstance(inputs, (list, tuple)) else inputs
        mask = torch.stack([ds.mask for ds in data_samples]).bool()
        num_visible = self._num_visible(mask)

        losses = self._step_losses()(self, imgs, mask, num_visible)
        if self.with_target:
            # the weight changes every step: applied outside the compiled
            # part (no recompilation), made on the device (no host sync)
            weight = self.current_feature_weight
            losses['loss_feature'] = weight * losses['loss_feature']
            losses['feature_weight'] = imgs.new_full((), weight)
        return losses
