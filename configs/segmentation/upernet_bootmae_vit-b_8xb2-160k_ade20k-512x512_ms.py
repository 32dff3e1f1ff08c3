# Multi-scale (ratios 0.5 ... 1.75) + flip test of the model trained by
# upernet_bootmae_vit-b_8xb2-160k_ade20k-512x512.py, with mmseg's
# TestTimeAug and SegTTAModel (each view sliding-window, 512 / 341).
# Test only:  tools/test.py THIS_CONFIG SEGMENTOR_CHECKPOINT
_base_ = './upernet_bootmae_vit-b_8xb2-160k_ade20k-512x512.py'

img_ratios = [0.5, 0.75, 1.0, 1.25, 1.5, 1.75]
# as the reference's SETR-style resize (docs/method.md section 8): each view
# keeps the aspect ratio and gets the short side max(512, 512 r), so no view
# falls under the 512 crop; max_size is set beyond any image: no long-side cap
tta_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(
        type='TestTimeAug',
        transforms=[
            [dict(type='ResizeShortestEdge', scale=max(512, int(512 * r)),
                  max_size=1 << 30) for r in img_ratios],
            [dict(type='RandomFlip', prob=0., direction='horizontal'),
             dict(type='RandomFlip', prob=1., direction='horizontal')],
            [dict(type='LoadAnnotations', reduce_zero_label=True)],
            [dict(type='PackSegInputs')],
        ])
]
test_dataloader = dict(dataset=dict(pipeline=tta_pipeline))
model = dict(_delete_=True, type='SegTTAModel', module={{_base_.model}})
