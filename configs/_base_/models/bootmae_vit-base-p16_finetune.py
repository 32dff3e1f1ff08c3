# BootMAE ViT-B/16 fine-tuning model (docs/method.md section 8): the encoder
# without final norm, mean of the patch tokens -> LayerNorm (ln2, the
# reference's fc_norm) -> linear head; drop path 0.1; Mixup 0.8 + CutMix 1.0;
# label smoothing 0.1. The encoder comes from a BootMAE checkpoint:
#   --cfg-options model.backbone.init_cfg.checkpoint=PATH
# (ours or the reference's; `source='target'` takes the momentum target).
model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='BootMAEViT',
        arch='b',
        img_size=224,
        patch_size=16,
        drop_path_rate=0.1,
        final_norm=False,
        out_type='avg_featmap',
        init_cfg=dict(
            type='BootMAEPretrained', checkpoint=None, source='online')),
    neck=None,
    head=dict(
        type='LinearClsHead',
        num_classes=1000,
        in_channels=768,
        loss=dict(
            type='LabelSmoothLoss', label_smooth_val=0.1, mode='original'),
        # the reference: trunc_normal(std=0.02) scaled by 0.001
        init_cfg=[dict(type='TruncNormal', layer='Linear', std=2e-5)]),
    train_cfg=dict(augments=[
        dict(type='Mixup', alpha=0.8),
        dict(type='CutMix', alpha=1.0)
    ]))
