# BootMAE pretraining schedule (docs/method.md section 7): AdamW (0.9, 0.95),
# wd 0.05 except 1-D params, biases, pos_embed and cls_token; lr 1.5e-4 per
# 256 images, 40 linear warm-up epochs from 0, cosine to the min lr, per
# iteration; mixed precision.
base_lr = 1.5e-4
total_batch_size = 2048  # 16 GPUs x 128
min_lr = 1e-4
max_epochs = 800
warmup_epochs = 40

# Mixed precision: bf16 autocast (Ampere and newer GPUs), which needs no
# loss scaling, so the scaler is off (no inf check, no host sync per step).
# For GPUs without bf16 use fp16 with dynamic loss scaling:
#   optim_wrapper = dict(dtype='float16', loss_scale='dynamic')
# fused=True: one fused AdamW kernel for all parameters (CUDA, and CPU on
# torch >= 2.4); set fused=False for the foreach implementation.
optim_wrapper = dict(
    type='AmpOptimWrapper',
    dtype='bfloat16',
    loss_scale=dict(enabled=False),
    optimizer=dict(
        type='AdamW',
        lr=base_lr * total_batch_size / 256,
        betas=(0.9, 0.95),
        weight_decay=0.05,
        fused=True),
    paramwise_cfg=dict(
        flat_decay_mult=0.0,  # 1-D parameters: norms, q/v biases
        bias_decay_mult=0.0,
        custom_keys={
            'pos_embed': dict(decay_mult=0.),
            'cls_token': dict(decay_mult=0.),
        }))

param_scheduler = [
    dict(
        type='LinearLR',
        start_factor=1e-8,
        by_epoch=True,
        begin=0,
        end=warmup_epochs,
        convert_to_iter_based=True),
    dict(
        type='CosineAnnealingLR',
        T_max=max_epochs - warmup_epochs,
        eta_min=min_lr,
        by_epoch=True,
        begin=warmup_epochs,
        end=max_epochs,
        convert_to_iter_based=True),
]

# EpochBasedTrainLoop that prepares the next batch (data preprocessor, on a
# side CUDA stream) while the step runs; trains exactly as the plain loop
train_cfg = dict(type='PrefetchEpochBasedTrainLoop', max_epochs=max_epochs)

# lr above is for 2048 images per step; `--auto-scale-lr` rescales it
auto_scale_lr = dict(base_batch_size=total_batch_size)
