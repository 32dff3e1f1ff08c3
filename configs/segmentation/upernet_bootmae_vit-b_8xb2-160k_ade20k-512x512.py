# BootMAE ViT-B + UperNet on ADE20K, 512 x 512 crops, 8 GPUs x 2 images,
# 160k iterations (docs/method.md section 8). Launch with
#   tools/dist_train.sh THIS_CONFIG 8 \
#       --cfg-options model.backbone.init_cfg.checkpoint=PATH
# PATH: a BootMAE pretraining checkpoint of ours or a reference one.
_base_ = [
    './_base_/models/upernet_bootmae_vit-b.py',
    'mmseg::_base_/datasets/ade20k.py',  # ADE20KDataset, pipelines, IoUMetric
    'mmseg::_base_/default_runtime.py',
    'mmseg::_base_/schedules/schedule_160k.py',  # IterBasedTrainLoop 160k
]
default_scope = 'mmseg'
custom_imports = dict(
    imports=['bootmae_mm.segmentation'], allow_failed_imports=False)
# data-loader workers die with the training process (even on SIGKILL); a
# run resumed with a new lr trains with it
default_hooks = dict(
    worker_parent_death=dict(type='mmpretrain.WorkerParentDeathHook'),
    resume_lr=dict(type='mmpretrain.ResumeLrHook'))

crop_size = (512, 512)
# the encoder takes crop_size inputs only (its relative position tables are
# made for that grid): test images with a side under 512 (all of them at the
# small scales of the multi-scale test) are padded up to it; the padding is
# cut off the prediction again before the metric. The top-level variable is
# the one mmengine hands to a test-time-augmentation wrapper (the _ms config)
data_preprocessor = dict(size=crop_size, test_cfg=dict(size=crop_size))
model = dict(data_preprocessor=data_preprocessor)

# AdamW + layer-wise lr decay 0.65 (mmseg's constructor: the scale of a
# parameter in block i is 0.65 ** (num_layers - i); embeddings get
# 0.65 ** (num_layers + 1), heads and neck 1). num_layers = the encoder depth.
optim_wrapper = dict(
    _delete_=True,
    type='AmpOptimWrapper',
    loss_scale='dynamic',
    optimizer=dict(
        type='AdamW', lr=4e-4, betas=(0.9, 0.999), weight_decay=0.05),
    clip_grad=dict(max_norm=3, norm_type=2),
    constructor='LearningRateDecayOptimizerConstructor',
    paramwise_cfg=dict(num_layers=12, decay_rate=0.65,
                       decay_type='layer_wise'))

param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0,
         end=1500),
    dict(type='PolyLR', eta_min=0.0, power=1.0, by_epoch=False, begin=1500,
         end=160000),
]

# 8 GPUs x 2 images per GPU
train_dataloader = dict(batch_size=2, num_workers=4)
val_dataloader = dict(batch_size=1, num_workers=4)
test_dataloader = val_dataloader
