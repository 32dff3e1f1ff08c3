"""Pretraining on a folder of one's own pictures (README "Pretraining on
your own images"): configs/bootmae_vit-b_800e_custom-folder.py with the
documented one-step change, on a flat folder of mixed formats, sizes and
colour modes; a missing or empty folder is refused naming the key and the
path."""
import os.path as osp

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope
from mmpretrain.registry import DATASETS

import bootmae_mm  # noqa: F401  (registers the transforms and wrappers)
from helpers.demo_pretrain import run_train_tool
from helpers.image_folder import make_image_folder, make_mixed_picture_folder
from helpers.repo import load_tool
from helpers.tiny_pretrain import FOLDER_CONFIG, write_tiny_pretrain_config

KEY = 'train_dataloader.dataset.dataset.data_root'


def test_every_picture_of_the_folder_goes_through_the_real_pipeline(
        tmp_path):
    """The config's own dataset and 224 px pipeline read every picture
    (and nothing else), also in nested folders, into a 3 x 224 x 224 uint8
    image with its mask."""
    root, names = make_mixed_picture_folder(tmp_path / 'my_images')
    make_image_folder(osp.join(root, 'a'), classes=('b', ), per_class=1,
                      ext='png')  # a/b/000.png
    names = sorted(names + [osp.join('a', 'b', '000.png')])
    cfg = Config.fromfile(FOLDER_CONFIG)
    cfg.merge_from_dict({KEY: root})
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        dataset = DATASETS.build(cfg.train_dataloader.dataset)
        paths = [osp.relpath(dataset.get_data_info(i)['img_path'], root)
                 for i in range(len(dataset))]
        assert sorted(paths) == names
        for i in range(len(dataset)):
            sample = dataset[(i, i)]  # (index, seed), as the sampler gives
            path = sample['data_samples'].img_path
            assert osp.relpath(path, root) == paths[i]  # none skipped
            img = sample['inputs']
            assert img.shape == (3, 224, 224), (path, img.shape)
            assert img.dtype == torch.uint8, (path, img.dtype)
            # a picture, not a blank: the 16-bit ones keep their high byte
            assert len(np.unique(img.numpy())) > 8, path
            assert sample['data_samples'].mask.sum() == 147


def test_a_flat_folder_pretrains_with_the_documented_change(tmp_path):
    """tools/train.py on the custom-folder config (shrunk to a tiny model)
    with --cfg-options train_dataloader.dataset.dataset.data_root=PATH."""
    root, names = make_mixed_picture_folder(tmp_path / 'my_images')
    config = write_tiny_pretrain_config(tmp_path / 'tiny_folder.py',
                                        base=FOLDER_CONFIG, batch_size=4)
    work_dir = tmp_path / 'work'
    code, out, iters = run_train_tool(
        config, work_dir, extra=['--cfg-options', f'{KEY}={root}'])
    assert code == 0, out[-4000:]
    # 12 pictures in batches of 4: every one was found and read
    assert iters == [1, 2, 3], out[-3000:]
    assert 'Skipped unreadable' not in out
    assert (work_dir / 'epoch_1.pth').is_file()


@pytest.mark.parametrize('kind', ['missing', 'empty'])
def test_a_missing_or_empty_folder_is_refused(tmp_path, kind):
    folder = tmp_path / 'my_images'
    if kind == 'empty':  # a sub-folder and a file, but no picture
        (folder / 'sub').mkdir(parents=True)
        (folder / 'sub' / 'notes.txt').write_text('no picture here')
    with pytest.raises(FileNotFoundError) as err:
        load_tool('tools/train.py').main([
            FOLDER_CONFIG, '--work-dir', str(tmp_path / 'work'),
            '--cfg-options', f'{KEY}={folder}'])
    message = str(err.value)
    assert KEY in message and str(folder) in message, message
    assert ('does not exist' if kind == 'missing' else 'no image') in message
    assert not (tmp_path / 'work').exists()  # refused before the runner
