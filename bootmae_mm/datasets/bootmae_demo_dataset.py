"""``BootMAEDemoDataset``: the demo pictures (``demo_pictures.py``) as an
mmpretrain dataset."""
from mmpretrain.datasets import ImageNet
from mmpretrain.registry import DATASETS

from ..config_errors import ConfigValueError
from .demo_pictures import DEMO_CLASSES, make_demo_dataset


@DATASETS.register_module()
class BootMAEDemoDataset(ImageNet):
    """mmpretrain's ``ImageNet`` dataset on the embedded demo pictures,
    drawn into ``root`` on first use (:func:`make_demo_dataset`), so the
    demo config needs no download and no preparation step.

    The folder is a plain ImageNet-layout folder: once drawn, ``dict(
    type='CustomDataset', data_root=root, data_prefix='train')`` reads the
    same data.

    The folder argument is ``root``, not ``data_root``: the training tool
    checks that every ``data_root`` exists before building anything, and
    this one is created here.

    Args:
        root (str): where the pictures live (or are drawn). Defaults to
            ``'data/demo'``.
        split (str): ``'train'`` or ``'val'``. Defaults to ``'train'``.
        num_train (int): training pictures per class. Defaults to 100.
        num_val (int): validation pictures per class. Defaults to 50.
        img_size (int): picture side in pixels. Defaults to 64.
        classes (Sequence[str]): which of the demo classes. Defaults to all.
        seed (int): seed of the drawing. Defaults to 0.
        **kwargs: other ``ImageNet`` / ``BaseDataset`` arguments
            (``pipeline``, ``test_mode`` ...).
    """

    def __init__(self, root: str = 'data/demo', split: str = 'train',
                 num_train: int = 100, num_val: int = 50,
                 img_size: int = 64, classes=DEMO_CLASSES, seed: int = 0,
                 **kwargs):
        if split not in ('train', 'val'):
            raise ConfigValueError(
                'split', split, f'BootMAEDemoDataset.split="{split}" must be '
                '"train" or "val".')
        make_demo_dataset(root, num_train=num_train, num_val=num_val,
                          img_size=img_size, classes=classes, seed=seed)
        kwargs.setdefault('metainfo', dict(classes=tuple(sorted(classes))))
        super().__init__(data_root=root, split=split, **kwargs)
