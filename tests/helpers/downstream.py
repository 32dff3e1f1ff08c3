"""The fine-tuning and linear-probing configs shrunk to a tiny encoder
(``helpers.bootmae.TINY_ARCH``), 3 classes and 32 px images, their GPU
settings (AMP, pinned memory) left as they are."""
import copy
import os.path as osp

from mmengine.config import Config

from helpers.bootmae import TINY_ARCH
from helpers.image_folder import make_image_folder
from helpers.repo import REPO_ROOT

CLASSES = ('ant', 'bee', 'cat')
DEPTH = 2  # probed blocks of the 3-block tiny encoder


def make_tiny_imagenet(root):
    """ImageNet layout under ``root`` (returned as a str), the 3
    :data:`CLASSES`, 40 px pictures: train/ 4 of each, val/ 2."""
    make_image_folder(root / 'train', classes=CLASSES, per_class=4, size=40)
    make_image_folder(root / 'val', classes=CLASSES, per_class=2, size=40,
                      seed=1)
    return str(root)


def _tiny_pipeline(pipeline):
    for t in pipeline:
        if t['type'] == 'RandomResizedCrop':
            t['scale'] = 32
        elif t['type'] == 'ResizeEdge':
            t['scale'] = 36
        elif t['type'] == 'CenterCrop':
            t['crop_size'] = 32


def tiny_cls_config(path, checkpoint, source='online', data_root=None,
                    work_dir=None):
    """The config at ``path`` (relative to the repository) with a tiny
    encoder, 3 classes, 32 px, batches of 4 read in the main process, one
    epoch; the checkpoint is set the way a user does it (--cfg-options)."""
    cfg = Config.fromfile(osp.join(REPO_ROOT, path))
    cfg.merge_from_dict({'model.backbone.init_cfg.checkpoint': checkpoint,
                         'model.backbone.init_cfg.source': source})
    bb = cfg.model.backbone
    bb.update(arch=copy.deepcopy(TINY_ARCH), img_size=32, patch_size=8)
    if bb.type == 'BootMAEViTLinearProbe':
        bb.depth = DEPTH
        cfg.model.neck.input_features = 64
    cfg.model.head.update(num_classes=len(CLASSES), in_channels=64)
    cfg.data_preprocessor.num_classes = len(CLASSES)
    for name in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        loader = cfg[name]
        loader.update(batch_size=4, num_workers=0, persistent_workers=False)
        loader.dataset.update(data_root=data_root or '',
                              metainfo=dict(classes=CLASSES))
        _tiny_pipeline(loader.dataset.pipeline)
    cfg.val_evaluator = cfg.test_evaluator = dict(type='Accuracy',
                                                  topk=(1, 2))
    cfg.train_cfg.max_epochs = 1
    cfg.default_hooks.logger.interval = 1
    cfg.log_level = 'WARNING'
    cfg.work_dir = str(work_dir) if work_dir else None
    return cfg
