"""What tools/train.py and tools/test.py share: turning a config plus the usual
OpenMMLab flags into a Runner for pretraining, classification or segmentation
configs alike."""
import logging
import os
import os.path as osp
import subprocess

import torch
from mmengine.config import Config
from mmengine.logging import print_log

from ..config_errors import explain_config_errors, key_paths
from ..datasets.dataset_wrappers import dataset_levels
from ..feeding.switch import apply_gpu_feeding_switch
from .checkpoint_fit import check_checkpoint_fits
from .checkpoint_pointer import find_resume_checkpoint
from .device_fallback import fallback_message, fit_to_device
from .fatal_errors import log_fatal_errors

# the file endings mmpretrain's CustomDataset takes by default
_CUSTOM_DATASET_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.ppm', '.bmp',
                              '.pgm', '.tif')
# the data loaders that each Runner method builds
_DATALOADERS = dict(train=('train_dataloader', 'val_dataloader'),
                    test=('test_dataloader', ))


def infer_default_scope(cfg: Config) -> str:
    """The config's ``default_scope``, or the registry that knows its model."""
    if cfg.get('default_scope'):
        return cfg.default_scope
    model_type = cfg.get('model', {}).get('type', '')
    from mmpretrain.registry import MODELS as PRETRAIN_MODELS

    from ..segmentation import is_segmentation_model
    if PRETRAIN_MODELS.get(model_type) is None and \
            is_segmentation_model(model_type):
        return 'mmseg'
    return 'mmpretrain'


def dangling_links(folder: str):
    """Paths of the symbolic links under ``folder`` whose target is gone
    (a folder dataset leaves them out silently)."""
    for dir_path, dir_names, file_names in os.walk(folder):
        for name in dir_names + file_names:
            path = osp.join(dir_path, name)
            if osp.islink(path) and not osp.exists(path):
                yield path


def folder_images(dataset: dict):
    """The folder a folder dataset (mmpretrain's ``CustomDataset`` without
    ``ann_file``, labelled or not) reads and the file name endings it
    takes; None for any other dataset."""
    if str(dataset.get('type')).split('.')[-1] != 'CustomDataset' or \
            dataset.get('ann_file'):
        return None
    prefix = dataset.get('data_prefix') or ''
    if isinstance(prefix, dict):
        prefix = prefix.get('img_path', '')
    extensions = dataset.get('extensions', _CUSTOM_DATASET_EXTENSIONS)
    return (osp.join(dataset['data_root'], prefix),
            tuple(e.lower() for e in extensions))


def holds_image(folder: str, extensions) -> bool:
    """Whether a file ending in one of ``extensions`` (any case) lies
    anywhere under ``folder`` (stops at the first one)."""
    for _, _, file_names in os.walk(folder, followlinks=True):
        if any(name.lower().endswith(extensions) for name in file_names):
            return True
    return False


def check_data_paths(cfg: Config, method: str = 'train') -> None:
    """Fail before building anything when a dataset root that ``method``
    ('train' or 'test') reads is missing, or an image folder
    (:func:`folder_images`) holds no image, naming the config key and the
    path. Testing needs no training data and vice versa. A folder dataset
    (no ``ann_file``) is scanned for dangling symbolic links, which the
    dataset would leave out without a word: a warning names them."""
    for loader_key in _DATALOADERS[method]:
        loader = cfg.get(loader_key)
        if not loader:
            continue
        for key, dataset in dataset_levels(loader.get('dataset'),
                                           f'{loader_key}.dataset'):
            root = dataset.get('data_root')
            if not root or '://' in str(root):
                continue
            if not osp.isdir(root):
                raise FileNotFoundError(
                    f'{key}.data_root: dataset folder "{root}" does not exist '
                    '(set it with --cfg-options '
                    f'{key}.data_root=PATH)')
            images = folder_images(dataset)
            if images and not holds_image(*images):
                raise FileNotFoundError(
                    f'{key}.data_root: no image ({", ".join(images[1])}) '
                    f'under "{images[0]}" (set the folder of your images '
                    f'with --cfg-options {key}.data_root=PATH)')
            if not dataset.get('ann_file'):
                links = sorted(dangling_links(root))
                if links:
                    print_log(
                        f'{key}.data_root: {len(links)} symbolic link(s) '
                        f'under {root} point to nothing and are left out of '
                        f'the dataset: {", ".join(links[:5])}'
                        f'{" ..." if len(links) > 5 else ""}',
                        logger='current', level=logging.WARNING)


def check_settings(cfg: Config, method: str = 'train') -> None:
    """Refuse, naming the config key, settings torch would refuse with a
    bare message later: a data loader's ``batch_size`` that is not a
    positive integer, a negative (or NaN) lr or weight decay."""
    where = f' in {cfg.filename}' if cfg.filename else ''
    for loader_key in _DATALOADERS[method]:
        loader = cfg.get(loader_key)
        if not loader or 'batch_size' not in loader:
            continue
        size = loader['batch_size']
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f'{loader_key}.batch_size{where}: '
                             f'batch_size={size!r} must be a positive '
                             'integer (images per process and step).')
    if method == 'train':
        check_mask_count(cfg)
    optimizer = (cfg.get('optim_wrapper') or {}).get('optimizer') \
        if method == 'train' else None
    for name in ('lr', 'weight_decay'):
        value = (optimizer or {}).get(name)
        if isinstance(value, (int, float)) and not value >= 0:
            raise ValueError(f'optim_wrapper.optimizer.{name}{where}: '
                             f'{name}={value} must be >= 0.')


def check_mask_count(cfg: Config) -> None:
    """Refuse a model whose ``num_masking_patches`` differs from the
    masking transform's: the step trusts the model's count on an
    accelerator (it reads no mask value back), so a mismatch would stop the
    run at a device-side assert instead of here, naming both keys."""
    model_count = (cfg.get('model') or {}).get('num_masking_patches')
    if model_count is None:
        return
    loader = cfg.get('train_dataloader') or {}
    for path, holder in key_paths(loader.get('dataset') or {},
                                  'num_masking_patches',
                                  'train_dataloader.dataset'):
        count = holder['num_masking_patches']
        if count != model_count:
            where = f' in {cfg.filename}' if cfg.filename else ''
            raise ValueError(
                f'model.num_masking_patches{where}: '
                f'model.num_masking_patches={model_count} but the masking '
                f'transform masks {count} ({path}); set them equal.')


def setup_cpu_distributed(cfg: Config, launcher: str) -> bool:
    """On a machine without CUDA, start a gloo process group ourselves (
    mmengine would call ``torch.cuda.set_device``) and wrap the model in DDP
    without device ids. Returns whether it started the group."""
    if launcher == 'none' or torch.cuda.is_available():
        return False
    import torch.distributed as dist
    if launcher == 'slurm':  # the variables mmengine's slurm set-up makes
        os.environ.setdefault('RANK', os.environ['SLURM_PROCID'])
        os.environ.setdefault('WORLD_SIZE', os.environ['SLURM_NTASKS'])
        os.environ.setdefault('LOCAL_RANK', os.environ['SLURM_LOCALID'])
        os.environ.setdefault('MASTER_PORT', '29500')
        if 'MASTER_ADDR' not in os.environ:  # the job's first node
            os.environ['MASTER_ADDR'] = subprocess.run(
                ['scontrol', 'show', 'hostname',
                 os.environ['SLURM_NODELIST']], capture_output=True,
                text=True, check=True).stdout.split()[0]
    started = not dist.is_initialized()
    if started:
        dist.init_process_group(backend='gloo')
    cfg.setdefault('env_cfg', {}).setdefault('dist_cfg', {})['backend'] = \
        'gloo'
    if cfg.get('model_wrapper_cfg') is None and cfg.get('strategy') is None:
        cfg.model_wrapper_cfg = dict(
            type='MMDistributedDataParallel', device_ids=None,
            broadcast_buffers=False,
            find_unused_parameters=cfg.get('find_unused_parameters', False))
    return started


def build_runner(cfg: Config):
    """A Runner, or a FlexibleRunner when the config names a ``strategy``
    (FSDP / DeepSpeed)."""
    if cfg.get('strategy') is not None:
        from mmengine.runner import FlexibleRunner
        return FlexibleRunner.from_cfg(cfg)
    if 'runner_type' in cfg:
        from mmengine.registry import RUNNERS
        return RUNNERS.build(cfg)
    from mmengine.runner import Runner
    return Runner.from_cfg(cfg)


def load_config(config: str, cfg_options=None, launcher: str = 'none',
                work_dir=None) -> Config:
    """The config file with ``--cfg-options`` merged, the launcher set and
    the work dir resolved (``--work-dir``, the config's, or
    ``work_dirs/<config name>``), as both tools start."""
    cfg = Config.fromfile(config)
    if cfg_options is not None:
        cfg.merge_from_dict(cfg_options)
    cfg.launcher = launcher
    cfg.work_dir = work_dir or cfg.get('work_dir') or osp.join(
        './work_dirs', osp.splitext(osp.basename(config))[0])
    return cfg


def resolve_checkpoint(runner, cfg: Config, method: str) -> None:
    """Before anything trains: with ``resume=True`` and no ``load_from``
    (``--resume auto``) pick the newest complete checkpoint of the work dir
    (:func:`find_resume_checkpoint`: a stale or damaged one is skipped with
    a warning), and refuse a checkpoint written for another model
    (:func:`check_checkpoint_fits`; ``load_from_skip_mismatched=True`` lets
    ``load_from`` start mismatched tensors from their initialization).

    mmengine 0.10.7's own ``--resume auto`` (``resume=True``,
    ``load_from=None``) follows ``last_checkpoint`` blindly inside
    ``train()``; the runner's ``_load_from`` / ``_resume`` are set here
    instead, after it is built, so that the warnings reach its log file.
    The checking reads the checkpoint once more (on the CPU)."""
    if method != 'train':
        return
    # mmengine 0.10.7's Runner takes the checkpoint to load or resume only
    # as constructor arguments (kept in `_load_from` / `_resume`, read by
    # `train()`); it has no public setter, and its public `resume()` /
    # `load_checkpoint()` cannot be called here, before `train()` has built
    # the optimizer and the schedulers whose state a resume restores. So
    # the two fields are set here, once the runner (and its log) exists.
    if cfg.get('resume') and not cfg.get('load_from'):
        runner._load_from = find_resume_checkpoint(runner.work_dir,
                                                   runner.logger)
        runner._resume = runner._load_from is not None
        if runner._load_from is None:
            runner.logger.info(f'Resume: no checkpoint in {runner.work_dir}'
                               ', starting from scratch.')
    filename = runner._load_from
    if filename is None or not isinstance(runner.model, torch.nn.Module):
        return
    resume = bool(runner._resume)
    if resume or not cfg.get('load_from_skip_mismatched', False):
        check_checkpoint_fits(runner.model, filename, resume=resume)


def run(cfg: Config, method: str):
    """Check the settings and data paths, set up CPU distribution, fit
    the GPU-only settings to a machine without GPU (one warning), build
    the runner, resolve and check the checkpoint to resume from or load,
    and call ``runner.<method>()`` ('train' or 'test'), with config errors
    reported by key and any error that ends the run also written to the
    run's log file. Returns what the method returns (the trained model or
    the test metrics)."""
    cfg.default_scope = infer_default_scope(cfg)
    apply_gpu_feeding_switch(cfg)
    check_settings(cfg, method)
    check_data_paths(cfg, method)
    started_group = setup_cpu_distributed(cfg, cfg.launcher)
    changes = fit_to_device(cfg)
    with explain_config_errors(cfg):
        runner = build_runner(cfg)
    if changes:  # after the build: into the run's log file, from rank 0
        runner.logger.warning(fallback_message(changes))
    with log_fatal_errors(runner.logger), explain_config_errors(cfg):
        resolve_checkpoint(runner, cfg, method)
        result = getattr(runner, method)()
    if started_group:
        # joined here, not torn down at interpreter exit, where gloo's
        # threads could abort a finished rank ("terminate called without
        # an active exception", SIGABRT, seen in tests/tools/test_tools.py);
        # after a barrier, so that no rank closes its connections while
        # another still talks to it
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    return result

