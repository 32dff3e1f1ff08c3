"""Bad pretraining configs fail through ``tools/train.py`` with an error that
names the config key (and the file), before any training step."""
import os.path as osp

import pytest

from helpers.demo_pretrain import write_tiny_demo_config
from helpers.repo import REPO_ROOT, load_tool

MASK = 'train_dataloader.dataset.dataset.pipeline.3.'
CASES = {
    # (--cfg-options, expected error type, key named, words of the message)
    'masked patches >= patches': (
        ['model.num_masking_patches=16', MASK + 'num_masking_patches=16'],
        ValueError,
        'model.num_masking_patches / '
        'train_dataloader.dataset.dataset.pipeline[3].num_masking_patches',
        'must be in 1 .. 15 for the 4 x 4 patch grid'),
    'image size not divisible by patch size': (
        ['model.backbone.img_size=30'], ValueError,
        'model.backbone.img_size', 'img_size=30 is not divisible by '
        'patch_size=8'),
    'unknown arch': (
        ['model.backbone.arch=vit-xl'], ValueError, 'model.backbone.arch',
        'arch="vit-xl" is not a known ViT arch'),
    'decoder width not divisible by 4': (
        ['model.pixel_decoder.embed_dims=30'], ValueError,
        'model.pixel_decoder.embed_dims', 'needs a width divisible by 4'),
    'negative feature weight': (
        ['model.feature_weight=-0.5'], ValueError, 'model.feature_weight',
        'feature_weight=-0.5 must be >= 0'),
    'EMA decay 1': (
        ['custom_hooks.0.base=1.0'], ValueError, 'custom_hooks[0].base',
        'an EMA decay must lie in (0, 1)'),
    'EMA decay 0': (
        ['custom_hooks.0.start=0.0'], ValueError, 'custom_hooks[0].start',
        'an EMA decay must lie in (0, 1)'),
    'batch size 0': (
        ['train_dataloader.batch_size=0'], ValueError,
        'train_dataloader.batch_size',
        'batch_size=0 must be a positive integer'),
    'negative lr': (
        ['optim_wrapper.optimizer.lr=-0.001'], ValueError,
        'optim_wrapper.optimizer.lr', 'lr=-0.001 must be >= 0'),
    'model and transform disagree on the mask': (
        ['model.num_masking_patches=10'], ValueError,
        'model.num_masking_patches',
        'model.num_masking_patches=10 but the masking transform masks 12 '
        '(train_dataloader.dataset.dataset.pipeline[3].num_masking_patches)'),
}



@pytest.fixture(scope='module')
def tiny_config(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('bad_configs')
    return write_tiny_demo_config(tmp / 'tiny.py', tmp / 'data',
                                  num_workers=0, persistent=False,
                                  max_epochs=2)


@pytest.mark.parametrize('case', list(CASES))
def test_bad_config_names_the_key(case, tiny_config, tmp_path):
    options, error, key, words = CASES[case]
    work_dir = tmp_path / 'work'
    with pytest.raises(error) as err:
        load_tool('tools/train.py').main(
            [tiny_config, '--work-dir', str(work_dir), '--cfg-options',
             *options])
    msg = str(err.value)
    assert msg.startswith(key + ' in ' + tiny_config + ':'), msg
    assert words in msg, msg
    # no step was trained, no checkpoint written
    assert not list(work_dir.glob('*.pth'))


def test_missing_data_root_is_named(tmp_path):
    """The ImageNet pretraining config with a data root that does not exist
    fails before anything is built."""
    config = osp.join(REPO_ROOT, 'configs', 'bootmae_vit-b_800e.py')
    missing = str(tmp_path / 'no_imagenet')
    with pytest.raises(FileNotFoundError) as err:
        load_tool('tools/train.py').main(
            [config, '--work-dir', str(tmp_path / 'work'), '--cfg-options',
             f'train_dataloader.dataset.dataset.data_root={missing}'])
    msg = str(err.value)
    assert msg.startswith('train_dataloader.dataset.dataset.data_root: '
                          f'dataset folder "{missing}" does not exist'), msg
    assert not osp.exists(tmp_path / 'work')


def test_test_tool_checks_only_the_test_data(tmp_path):
    """Evaluating needs the test set only: a missing training folder does
    not stop tools/test.py, a missing test folder does (named)."""
    from mmengine.config import Config

    from bootmae_mm.engine.run_config import check_data_paths
    cfg = Config.fromfile(osp.join(REPO_ROOT, 'configs', 'linear',
                                   'bootmae_vit-b_linear-90e_in1k.py'))
    present = str(tmp_path)
    cfg.train_dataloader.dataset.data_root = str(tmp_path / 'no_train')
    cfg.val_dataloader.dataset.data_root = present
    cfg.test_dataloader.dataset.data_root = present
    check_data_paths(cfg, 'test')
    with pytest.raises(FileNotFoundError, match='train_dataloader'):
        check_data_paths(cfg, 'train')
    cfg.test_dataloader.dataset.data_root = str(tmp_path / 'no_test')
    with pytest.raises(FileNotFoundError,
                       match='test_dataloader.dataset.data_root'):
        check_data_paths(cfg, 'test')
