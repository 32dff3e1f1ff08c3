"""The package-lookup shim (bootmae_mm.compat, shim 4): mmengine resolves
``mmseg::`` config bases without ``pkg_resources``."""
import importlib.util
import os.path as osp

import mmseg
import pytest
from mmengine.config import Config

from bootmae_mm import compat


def test_package_lookup_without_pkg_resources():
    assert compat._is_installed('mmsegmentation')  # a distribution name
    assert compat._is_installed('mmseg')  # a module name
    assert not compat._is_installed('no_such_package_bootmae')
    assert compat._get_installed_path('mmseg') == osp.dirname(mmseg.__file__)
    # distribution name != module name
    assert compat._get_installed_path('mmsegmentation') == \
        osp.dirname(mmseg.__file__)
    with pytest.raises(Exception):
        compat._get_installed_path('no_such_package_bootmae')


def test_mmseg_base_configs_resolve(tmp_path):
    import mmengine.config.config as config_module
    if importlib.util.find_spec('pkg_resources') is None:
        assert config_module.is_installed is compat._is_installed
    cfg_file = tmp_path / 'cfg.py'
    cfg_file.write_text("_base_ = ['mmseg::_base_/datasets/ade20k.py']\n"
                        "train_dataloader = dict(batch_size=2)\n")
    cfg = Config.fromfile(str(cfg_file))
    assert cfg.train_dataloader.dataset.type == 'ADE20KDataset'
    assert cfg.train_dataloader.batch_size == 2
    assert cfg.val_evaluator.type == 'IoUMetric'
