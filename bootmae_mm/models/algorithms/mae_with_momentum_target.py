"""mmpretrain's stock ``MAE`` plus BootMAE's momentum feature target.

Shows that the parts compose: the MAE encoder, decoder and pixel head are
mmpretrain's own (``MAEViT``, ``MAEPretrainDecoder``, ``MAEPretrainHead``,
unchanged, MAE's random masking); added are BootMAE's feature branch
(``BootMAEFeatureDecoder`` with plain MAE-style blocks,
``cross_attention=False``, following the encoder's width, heads and grid;
``BootMAEFeatureHead``) and its momentum target, driven by
``MomentumTargetHook``, as :class:`BootMAE` builds and updates them.
"""
import torch
from mmpretrain.models import MAE, BaseSelfSupervisor
from mmpretrain.registry import MODELS

from ..utils import gather_tokens
from .bootmae import BootMAE


@MODELS.register_module()
class MAEWithMomentumTarget(BootMAE):
    """MAE + a momentum-encoder feature target (docs/method.md sections 5, 6).

    MAE's pixel branch (``backbone``, ``neck``, ``head``, its ``loss``)
    in place of BootMAE's; BootMAE's feature branch and momentum target.

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
        # MAE's parts, as mmpretrain's MAE builds them (not BootMAE's)
        BaseSelfSupervisor.__init__(self, backbone=backbone, neck=neck,
                                    head=head, **kwargs)
        self.num_masking_patches = None
        self.set_compile(False)
        # the target: the same ViT as BootMAEViT (same parameter names),
        # without final norm
        target = MODELS.build(dict(
            type='BootMAEViT', final_norm=False,
            **{k: v for k, v in backbone.items()
               if k in ('arch', 'img_size', 'patch_size')}))
        self.build_feature_branch(feature_decoder, feature_head,
                                  feature_weight, target)

    extract_feat = MAE.extract_feat

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
