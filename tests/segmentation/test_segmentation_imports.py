"""``import bootmae_mm`` registers the pretraining and classification parts
without importing mmseg; the segmentation configs import
``bootmae_mm.segmentation`` themselves."""
import glob
import os.path as osp
import sys

from mmengine.config import Config

from helpers.repo import REPO_ROOT, run_tool


def test_import_bootmae_mm_does_not_import_mmseg():
    out = run_tool([sys.executable, '-c', (
        'import sys, bootmae_mm\n'
        'from mmpretrain.registry import MODELS\n'
        "assert MODELS.get('BootMAE') is not None\n"
        "print('MMSEG' if 'mmseg' in sys.modules else 'NO-MMSEG')")])
    assert out.returncode == 0, out.stdout[-3000:]
    assert out.stdout.strip().splitlines()[-1] == 'NO-MMSEG', out.stdout


def test_import_segmentation_registers_the_mmseg_parts():
    out = run_tool([sys.executable, '-c', (
        'import bootmae_mm.segmentation\n'
        'from mmseg.registry import MODELS\n'
        "print(MODELS.get('BootMAEViTSeg').__module__)")])
    assert out.returncode == 0, out.stdout[-3000:]
    assert out.stdout.strip().splitlines()[-1] == \
        'bootmae_mm.segmentation.bootmae_vit_seg'


def test_segmentation_configs_import_the_segmentation_parts():
    configs = glob.glob(osp.join(REPO_ROOT, 'configs', 'segmentation',
                                 '*.py'))
    assert configs
    for path in configs:
        cfg = Config.fromfile(path, import_custom_modules=False)
        assert 'bootmae_mm.segmentation' in cfg.custom_imports.imports, path
