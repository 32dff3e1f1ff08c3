"""mmpretrain's stock ``MAE`` plus BootMAE's momentum feature target.

Shows that the parts compose: the MAE encoder, decoder and pixel head are
mmpretrain's own (``MAEViT``, ``MAEPretrainDecoder``, ``MAEPretrainHead``,
unchanged, MAE's random masking); added are our ``BootMAEFeatureDecoder``
(plain MAE-style blocks, ``cross_attention=False``, following the encoder's
width, heads and grid), ``BootMAEFeatureHead`` and a momentum copy of the
encoder driven by ``MomentumTargetHook``.
"""
import copy

import torch
from mmpretrain.models import MAE
from mmpretrain.registry import MODELS

from ..utils import gather_tokens
from .feature_branch import FeatureBranchMixin
from .follow_encoder import decoder_cfg


@MODELS.register_module()
class MAEWithMomentumTarget(FeatureBranchMixin, MAE):
    """MAE + a momentum-encoder feature target (docs/method.md sections 5, 6).

    Args:
        backbone (dict): an mmpretrain ``MAEViT``.
        neck (dict): an mmpretrain ``MAEPretrainDecoder``.
        head (dict): an mmpretrain ``MAEPretrainHead``.
        feature_decoder (dict): ``BootMAEFeatureDecoder`` with
            ``cross_attention=False`` (MAE gives no intermediate taps).
        feature_head (dict): ``BootMAEFeatureHead``.
        feature_weight (float): weight of the feature loss. Defaults to 1.
        **kwargs: other ``MAE`` arguments (``data_preprocessor`` ...).
    """

    def __init__(self, backbone: dict, neck: dict, head: dict,
                 feature_decoder: dict, feature_head: dict,
                 feature_weight: float = 1.0, **kwargs):
        super().__init__(backbone=backbone, neck=neck, head=head, **kwargs)
        # the target: the same ViT as BootMAEViT (same parameter names),
        # without final norm, its parameters frozen as buffers
        target_cfg = dict(type='BootMAEViT', final_norm=False,
                          **{k: v for k, v in copy.deepcopy(backbone).items()
                             if k in ('arch', 'img_size', 'patch_size')})
        target = MODELS.build(target_cfg)
        # the feature decoder follows the encoder (width, heads, grid)
        self.build_feature_branch(
            decoder_cfg(feature_decoder, target, 'model.feature_decoder',
                        feature=True),
            feature_head, target, feature_weight)

    def loss(self, inputs, data_samples, **kwargs):
        latent, mask, ids_restore = self.backbone(inputs)
        losses = dict(loss=self.head.loss(self.neck(latent, ids_restore),
                                          inputs, mask))
        # MAE keeps visible tokens in shuffled order; our decoder wants them
        # in raster order
        num_visible = latent.shape[1] - 1
        ids_keep = ids_restore.argsort(1)[:, :num_visible]
        order = ids_keep.argsort(1)
        latent = torch.cat(
            (latent[:, :1], gather_tokens(latent[:, 1:], order)), 1)
        pred = self.feature_decoder(latent, None, mask)
        h, w = self.feature_decoder.patch_resolution
        losses['loss_feature'] = self.current_feature_weight * \
            self.feature_head.loss(pred, self.target_features(inputs),
                                   mask.view(-1, h, w))
        return losses
