"""One config line turns all GPU feeding off: ``gpu_feeding = False``
(or ``--cfg-options gpu_feeding=False``), applied by ``tools/train.py`` /
``tools/test.py`` (:func:`bootmae_mm.engine.run_config.run`) before the
runner is built. docs/benchmarks.md says what each part rests on."""
from mmengine.config import Config

#: the config's data loader keys
LOADERS = ('train_dataloader', 'val_dataloader', 'test_dataloader')


def apply_gpu_feeding_switch(cfg: Config) -> None:
    """With ``cfg.gpu_feeding`` False: the plain ``EpochBasedTrainLoop``
    instead of the prefetching loop, ``SelfSupDataPreprocessor`` with
    blocking copies instead of ``BootMAEDataPreprocessor``, mmengine's
    ``default_collate`` (one copy per mask) instead of ``mask_collate``, no
    pinned memory. A config that decodes on the GPU
    (``GPUDecodeDataPreprocessor``) needs its CPU pipeline back and is
    refused. Nothing changes when ``gpu_feeding`` is absent or True."""
    if cfg.get('gpu_feeding', True):
        return
    where = f' ({cfg.filename})' if cfg.filename else ''
    preprocessor = cfg.get('model', {}).get('data_preprocessor') or {}
    if preprocessor.get('type') == 'GPUDecodeDataPreprocessor':
        raise ValueError(
            f'gpu_feeding=False{where}: model.data_preprocessor.type='
            'GPUDecodeDataPreprocessor decodes the JPEGs on the GPU; give '
            'the CPU pipeline (RobustLoadImageFromFile, RandomResizedCrop) '
            'and BootMAEDataPreprocessor instead.')
    if preprocessor.get('type') == 'BootMAEDataPreprocessor':
        preprocessor['type'] = 'SelfSupDataPreprocessor'
    if preprocessor:
        preprocessor['non_blocking'] = False
    train_cfg = cfg.get('train_cfg') or {}
    if train_cfg.get('type') == 'PrefetchEpochBasedTrainLoop':
        train_cfg['type'] = 'EpochBasedTrainLoop'
    for key in LOADERS:
        loader = cfg.get(key)
        if not loader:
            continue
        loader['pin_memory'] = False
        if (loader.get('collate_fn') or {}).get('type') == 'mask_collate':
            loader['collate_fn'] = dict(type='default_collate')
