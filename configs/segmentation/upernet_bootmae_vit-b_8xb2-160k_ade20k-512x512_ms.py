# Multi-scale (ratios 0.5 ... 1.75 of the 2048 x 512 test scale) + flip test
# of the model trained by upernet_bootmae_vit-b_8xb2-160k_ade20k-512x512.py,
# with mmseg's TestTimeAug and SegTTAModel (each view sliding-window, 512 /
# 341). Test only:  tools/test.py THIS_CONFIG SEGMENTOR_CHECKPOINT
_base_ = './upernet_bootmae_vit-b_8xb2-160k_ade20k-512x512.py'

img_ratios = [0.5, 0.75, 1.0, 1.25, 1.5, 1.75]
tta_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(
        type='TestTimeAug',
        transforms=[
            [dict(type='Resize', scale=(int(2048 * r), int(512 * r)),
                  keep_ratio=True) for r in img_ratios],
            [dict(type='RandomFlip', prob=0., direction='horizontal'),
             dict(type='RandomFlip', prob=1., direction='horizontal')],
            [dict(type='LoadAnnotations', reduce_zero_label=True)],
            [dict(type='PackSegInputs')],
        ])
]
test_dataloader = dict(dataset=dict(pipeline=tta_pipeline))
model = dict(_delete_=True, type='SegTTAModel', module={{_base_.model}})
