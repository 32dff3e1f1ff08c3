"""A tiny mmpretrain ViT classifier config, a complete training config
around it, and writing a config dict to a file."""


def tiny_vit_classifier_cfg(num_classes=2, img_size=32, embed_dims=32):
    """An mmpretrain ``ImageClassifier`` config with a one-layer ViT."""
    return dict(
        type='ImageClassifier',
        data_preprocessor=dict(
            num_classes=num_classes, mean=[127.5] * 3, std=[127.5] * 3,
            to_rgb=True),
        backbone=dict(
            type='VisionTransformer',
            arch=dict(embed_dims=embed_dims, num_layers=1, num_heads=2,
                      feedforward_channels=2 * embed_dims),
            img_size=img_size, patch_size=16, drop_rate=0.0),
        head=dict(
            type='VisionTransformerClsHead', num_classes=num_classes,
            in_channels=embed_dims,
            loss=dict(type='CrossEntropyLoss', loss_weight=1.0)))


def tiny_classifier_train_cfg(data_root, work_dir=None, max_iters=2,
                              batch_size=2, checkpoint_interval=1,
                              model=None, **extra):
    """A complete mmpretrain training config (dict) for a tiny ViT on the
    folder made by :func:`helpers.image_folder.make_image_folder`, iteration
    based, no validation, a checkpoint every ``checkpoint_interval``
    iterations."""
    cfg = dict(
        default_scope='mmpretrain',
        custom_imports=dict(imports=['bootmae_mm'],
                            allow_failed_imports=False),
        model=model or tiny_vit_classifier_cfg(),
        train_dataloader=dict(
            batch_size=batch_size, num_workers=0,
            sampler=dict(type='DefaultSampler', shuffle=True),
            dataset=dict(
                type='CustomDataset', data_root=str(data_root),
                pipeline=[dict(type='LoadImageFromFile'),
                          dict(type='PackInputs')])),
        train_cfg=dict(by_epoch=False, max_iters=max_iters),
        optim_wrapper=dict(optimizer=dict(type='AdamW', lr=1e-3)),
        default_hooks=dict(
            timer=dict(type='IterTimerHook'),
            logger=dict(type='LoggerHook', interval=1),
            param_scheduler=dict(type='ParamSchedulerHook'),
            checkpoint=dict(type='CheckpointHook', by_epoch=False,
                            interval=checkpoint_interval),
            sampler_seed=dict(type='DistSamplerSeedHook')),
        env_cfg=dict(cudnn_benchmark=False,
                     dist_cfg=dict(backend='gloo')),
        log_processor=dict(by_epoch=False),
        randomness=dict(seed=0),
        log_level='INFO',
    )
    if work_dir is not None:
        cfg['work_dir'] = str(work_dir)
    cfg.update(extra)
    return cfg


def write_config(path, cfg):
    """Write a config dict as a python config file and return its path."""
    from mmengine.config import Config
    path = str(path)
    Config(cfg).dump(path)
    return path
