"""The pretraining configs of the ablation study (``run_study.py``): each
variant's own config file, shrunk the same way to one small scale (encoder,
images, masking ratio, data, schedule, runtime); only what makes the
variant differs."""
import copy
import os.path as osp

from mmengine.config import Config

HERE = osp.dirname(osp.abspath(__file__))
REPO = osp.dirname(osp.dirname(HERE))

#: variant -> (config file, what it is); ``random`` is not pretrained
VARIANTS = {
    'pixel-only': ('configs/bootmae-ablation1_pixel-only_vit-b_800e.py',
                   'ablation (1): pixel target only, MAE-style'),
    'momentum-target': (
        'configs/bootmae-ablation2_momentum-target_vit-b_800e.py',
        'ablation (2): + momentum feature target'),
    'bootmae': ('configs/bootmae-ablation3_target-aware_vit-b_800e.py',
                'ablation (3): full BootMAE (+ target-aware decoders)'),
    'mae': ('configs/mae-momentum-target_vit-b_800e.py',
            "stock mmpretrain MAE (MAEViT, MAE's random masking)"),
    'mae+momentum': ('configs/mae-momentum-target_vit-b_800e.py',
                     'stock MAE + our momentum feature target'),
    'random': ('configs/bootmae-ablation3_target-aware_vit-b_800e.py',
               'randomly initialized encoder (no pretraining)'),
}

#: the one scale of every run (``quick``: the test-suite rehearsal)
SCALES = dict(
    full=dict(embed_dims=64, num_layers=4, num_heads=4, img_size=32,
              patch_size=8, num_masked=12, num_train=200, num_val=100,
              batch_size=64, epochs=40, monitor_every=8),
    quick=dict(embed_dims=32, num_layers=2, num_heads=2, img_size=16,
               patch_size=4, num_masked=12, num_train=8, num_val=4,
               batch_size=16, epochs=2, monitor_every=1),
)


def data_cfg(root: str, split: str, scale: dict, pipeline: list) -> dict:
    """The demo pictures at the study's size."""
    return dict(type='BootMAEDemoDataset', root=root, split=split,
                num_train=scale['num_train'], num_val=scale['num_val'],
                img_size=scale['img_size'], pipeline=pipeline)


def _shrink_model(model, variant: str, s: dict):
    arch = dict(embed_dims=s['embed_dims'], num_layers=s['num_layers'],
                num_heads=s['num_heads'],
                feedforward_channels=4 * s['embed_dims'])
    grid = s['img_size'] // s['patch_size']
    model.backbone.update(arch=arch, img_size=s['img_size'],
                          patch_size=s['patch_size'])
    if variant in ('mae', 'mae+momentum'):
        model.neck.update(num_patches=grid * grid, patch_size=s['patch_size'],
                          embed_dim=s['embed_dims'],
                          decoder_embed_dim=s['embed_dims'], decoder_depth=2,
                          decoder_num_heads=s['num_heads'])
        model.head.update(patch_size=s['patch_size'])
        model.backbone.mask_ratio = s['num_masked'] / grid ** 2
        if variant == 'mae':  # mmpretrain's own algorithm, unchanged
            model.type = 'MAE'
            for key in ('feature_decoder', 'feature_head', 'feature_weight'):
                model.pop(key)
    else:
        # the decoders follow the encoder's width, heads and grid
        model.pixel_decoder.update(embed_dims=s['embed_dims'])
        model.num_masking_patches = s['num_masked']
    return model


def study_config(variant: str, seed: int, work_dir: str, data_root: str,
                 scale: str = 'full') -> Config:
    """The pretraining config of ``variant`` at ``scale``, seeded."""
    s = SCALES[scale]
    cfg = Config.fromfile(osp.join(HERE, VARIANTS[variant][0]))
    cfg.model = _shrink_model(cfg.model, variant, s)
    size = s['img_size']
    pipeline = [
        dict(type='RobustLoadImageFromFile'),
        dict(type='RandomResizedCrop', scale=size, crop_ratio_range=(0.4, 1.),
             backend='pillow', interpolation='bicubic'),
        dict(type='RandomFlip', prob=0.5),
        dict(type='BootMAEMaskGenerator', img_size=size,
             patch_size=s['patch_size'], num_masking_patches=s['num_masked'],
             num_block_masking_patches=round(s['num_masked'] * 120 / 147),
             min_num_patches=2, max_num_patches=None, random_roll=True),
        dict(type='PackInputs'),
    ]
    cfg.train_dataloader = dict(
        batch_size=s['batch_size'], num_workers=0, persistent_workers=False,
        pin_memory=False, collate_fn=cfg.train_dataloader.collate_fn,
        sampler=dict(type='ResumableSampler', shuffle=True),
        dataset=dict(type='SeededDataset', dataset=data_cfg(
            data_root, 'train', s, pipeline)))
    epochs = s['epochs']
    cfg.optim_wrapper = dict(
        type='OptimWrapper',
        optimizer=dict(type='AdamW', lr=2e-3, betas=(0.9, 0.95),
                       weight_decay=0.05),
        paramwise_cfg=dict(flat_decay_mult=0., bias_decay_mult=0.,
                           custom_keys={'pos_embed': dict(decay_mult=0.),
                                        'cls_token': dict(decay_mult=0.)}))
    cfg.param_scheduler = [
        dict(type='LinearLR', start_factor=1e-3, by_epoch=True, begin=0,
             end=1, convert_to_iter_based=True),
        dict(type='CosineAnnealingLR', T_max=epochs - 1, eta_min=1e-5,
             by_epoch=True, begin=1, end=epochs,
             convert_to_iter_based=True)]
    cfg.train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=epochs)
    cfg.auto_scale_lr = dict(enable=False, base_batch_size=s['batch_size'])
    from bootmae_mm.evaluation import eval_pipeline
    monitor = dict(
        type='RepresentationMonitorHook', interval=s['monitor_every'],
        bank=data_cfg(data_root, 'train', s, eval_pipeline(size)),
        query=data_cfg(data_root, 'val', s, eval_pipeline(size)),
        k=20, temperature=0.07, pooling='mean', batch_size=128)
    hooks = [monitor]
    if variant not in ('pixel-only', 'mae'):  # those with a momentum target
        hooks = [dict(type='MomentumTargetHook', start=0.99, base=0.999,
                      ramp_epochs=max(1, epochs // 6)),
                 dict(type='FeatureWeightRampHook', ramp_fraction=0.25),
                 monitor]
    cfg.custom_hooks = hooks
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=10)
    cfg.default_hooks.checkpoint = dict(
        type='CheckpointHook', interval=epochs, max_keep_ckpts=1,
        save_last=True)
    cfg.env_cfg = dict(cudnn_benchmark=False, dist_cfg=dict(backend='gloo'),
                       mp_cfg=dict(mp_start_method='fork',
                                   opencv_num_threads=0))
    cfg.randomness = dict(seed=seed, deterministic=False)
    cfg.work_dir = work_dir
    return copy.deepcopy(cfg)
