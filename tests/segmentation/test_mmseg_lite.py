"""A real mmseg EncoderDecoder (UPerHead + FCNHead auxiliary) trains and
predicts on CPU with mmcv-lite once ``bootmae_mm`` is imported."""
import pytest
import torch
from mmengine.config import ConfigDict
from mmengine.registry import init_default_scope
from mmengine.structures import PixelData

import bootmae_mm  # noqa: F401  (mmcv.ops shim)

NUM_CLASSES = 3


def _segmentor():
    from mmseg.registry import MODELS
    init_default_scope('mmseg')
    norm_cfg = dict(type='BN', requires_grad=True)
    return MODELS.build(ConfigDict(
        type='EncoderDecoder',
        data_preprocessor=dict(
            type='SegDataPreProcessor', mean=[123.675, 116.28, 103.53],
            std=[58.395, 57.12, 57.375], bgr_to_rgb=True, pad_val=0,
            seg_pad_val=255, size=(64, 64)),
        backbone=dict(
            type='ResNetV1c', depth=18, stem_channels=8, base_channels=8,
            out_indices=(0, 1, 2, 3), norm_cfg=norm_cfg),
        decode_head=dict(
            type='UPerHead', in_channels=[8, 16, 32, 64],
            in_index=[0, 1, 2, 3], pool_scales=(1, 2, 3, 6), channels=16,
            dropout_ratio=0.1, num_classes=NUM_CLASSES, norm_cfg=norm_cfg,
            align_corners=False,
            loss_decode=dict(type='CrossEntropyLoss', loss_weight=1.0)),
        auxiliary_head=dict(
            type='FCNHead', in_channels=32, in_index=2, channels=8,
            num_convs=1, concat_input=False, dropout_ratio=0.1,
            num_classes=NUM_CLASSES, norm_cfg=norm_cfg, align_corners=False,
            loss_decode=dict(type='CrossEntropyLoss', loss_weight=0.4)),
        train_cfg=dict(),
        test_cfg=dict(mode='whole')))


def _batch(n=2, size=64):
    from mmseg.structures import SegDataSample
    g = torch.Generator().manual_seed(0)
    inputs, samples = [], []
    for _ in range(n):
        inputs.append(torch.randint(0, 256, (3, size, size), generator=g,
                                    dtype=torch.uint8))
        sample = SegDataSample(metainfo=dict(
            img_shape=(size, size), ori_shape=(size, size),
            pad_shape=(size, size), scale_factor=(1.0, 1.0), flip=False))
        sample.gt_sem_seg = PixelData(data=torch.randint(
            0, NUM_CLASSES, (1, size, size), generator=g))
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)


def test_encoder_decoder_uperhead_trains_and_predicts_on_cpu():
    from mmseg.models import EncoderDecoder
    from mmseg.models.decode_heads import FCNHead, UPerHead
    model = _segmentor()
    assert isinstance(model, EncoderDecoder)
    assert isinstance(model.decode_head, UPerHead)
    assert isinstance(model.auxiliary_head, FCNHead)

    model.train()
    data = model.data_preprocessor(_batch(), True)
    losses = model(**data, mode='loss')
    assert {'decode.loss_ce', 'aux.loss_ce'} <= set(losses)
    loss, log_vars = model.parse_losses(losses)
    assert torch.isfinite(loss) and loss.item() > 0
    loss.backward()
    for name in ('backbone.stem.0.weight', 'decode_head.conv_seg.weight',
                 'decode_head.psp_modules.0.1.conv.weight',
                 'auxiliary_head.conv_seg.weight'):
        grad = dict(model.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum() > 0, name

    # one optimizer step changes the prediction logits
    model.eval()
    with torch.no_grad():
        before = model(**model.data_preprocessor(_batch(), False),
                       mode='tensor')
    torch.optim.SGD(model.parameters(), lr=0.1).step()
    with torch.no_grad():
        after = model(**model.data_preprocessor(_batch(), False),
                      mode='tensor')
        preds = model.test_step(_batch())
    assert before.shape == (2, NUM_CLASSES, 16, 16)  # stride-4 logits
    assert not torch.allclose(before, after)
    assert len(preds) == 2
    for pred in preds:
        seg = pred.pred_sem_seg.data
        assert seg.shape == (1, 64, 64)
        assert seg.min() >= 0 and seg.max() < NUM_CLASSES
        assert pred.seg_logits.data.shape == (NUM_CLASSES, 64, 64)


def test_uperhead_on_tiny_mmseg_vit():
    """The ViT + UPerHead shape BootMAE's segmentation configs use."""
    from mmseg.registry import MODELS
    init_default_scope('mmseg')
    model = MODELS.build(ConfigDict(
        type='EncoderDecoder',
        data_preprocessor=dict(type='SegDataPreProcessor', size=(64, 64)),
        backbone=dict(
            type='VisionTransformer', img_size=(64, 64), patch_size=16,
            embed_dims=32, num_layers=4, num_heads=2, mlp_ratio=2,
            out_indices=(0, 1, 2, 3), final_norm=False),
        neck=dict(type='MultiLevelNeck', in_channels=[32] * 4,
                  out_channels=32, scales=[4, 2, 1, 0.5]),
        decode_head=dict(
            type='UPerHead', in_channels=[32] * 4, in_index=[0, 1, 2, 3],
            pool_scales=(1, 2, 3, 6), channels=16, num_classes=NUM_CLASSES,
            norm_cfg=dict(type='BN', requires_grad=True),
            loss_decode=dict(type='CrossEntropyLoss', loss_weight=1.0)),
        test_cfg=dict(mode='whole')))
    model.train()
    data = model.data_preprocessor(_batch(), True)
    loss, _ = model.parse_losses(model(**data, mode='loss'))
    loss.backward()
    grad = model.backbone.patch_embed.projection.weight.grad
    assert grad is not None and grad.abs().sum() > 0
    model.eval()
    preds = model.test_step(_batch())
    assert preds[0].pred_sem_seg.data.shape == (1, 64, 64)


@pytest.mark.skipif(bootmae_mm.compat.has_compiled_mmcv_ops(),
                    reason='full mmcv installed')
def test_running_on_mmcv_lite():
    import mmcv.ops
    assert mmcv.ops.__file__ == bootmae_mm.compat.__file__
