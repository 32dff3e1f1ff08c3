"""RobustLoadImageFromFile on a folder of broken and odd images, through the
real mmpretrain CustomDataset + pipeline + a torch DataLoader and a short
mmengine Runner training."""
import logging
import os
import os.path as osp
import re
import uuid

import numpy as np
import pytest
import torch
from mmengine.dataset import pseudo_collate
from mmengine.logging import MMLogger
from mmpretrain.datasets import CustomDataset
from mmpretrain.registry import TRANSFORMS
from PIL import Image
from torch.utils.data import DataLoader, SequentialSampler

import bootmae_mm  # noqa: F401  (registers the transforms)
from bootmae_mm.datasets.transforms.loading import UnreadableImageError

BAD = ('trunc.jpg', 'zero.jpg', 'text.jpg')


def make_bad_folder(root):
    """ImageNet layout: ``a/`` has normal images, ``b/`` odd and broken
    ones. Returns (root, {name: path}, reference RGB arrays)."""
    rng = np.random.default_rng(0)
    for cls in ('a', 'b'):
        os.makedirs(osp.join(root, cls))
    rgb = rng.integers(0, 256, (48, 40, 3), dtype=np.uint8)
    paths, ref = {}, {}

    def save(name, pil, cls='b', **kw):
        paths[name] = osp.join(root, cls, name)
        pil.save(paths[name], **kw)
        return paths[name]

    for i in range(4):
        save(f'normal{i}.jpg', Image.fromarray(np.roll(rgb, i, 0)), cls='a')
    # broken files
    good = save('trunc.jpg', Image.fromarray(rgb), quality=95)
    data = open(good, 'rb').read()
    with open(good, 'wb') as f:
        f.write(data[:len(data) // 2])
    paths['zero.jpg'] = osp.join(root, 'b', 'zero.jpg')
    open(paths['zero.jpg'], 'wb').close()
    paths['text.jpg'] = osp.join(root, 'b', 'text.jpg')
    with open(paths['text.jpg'], 'w') as f:
        f.write('this is not an image\n')
    # readable odd formats
    ref['gray.jpg'] = np.array(
        Image.open(save('gray.jpg', Image.fromarray(rgb[..., 0]),
                        quality=95)).convert('RGB'))
    ref['cmyk.jpg'] = np.array(
        Image.open(save('cmyk.jpg',
                        Image.fromarray(rgb).convert('CMYK'),
                        quality=95)).convert('RGB'))
    g16 = rng.integers(0, 65536, (30, 20), dtype=np.uint16)
    save('g16.png', Image.fromarray(g16))
    ref['g16.png'] = np.repeat((g16 >> 8).astype(np.uint8)[..., None], 3, 2)
    rgba = np.dstack([rgb, rng.integers(0, 256, rgb.shape[:2], np.uint8)])
    save('rgba.png', Image.fromarray(rgba))
    ref['rgba.png'] = rgb
    save('palette.png', Image.fromarray(rgb).convert('P'))
    ref['palette.png'] = np.array(Image.open(paths['palette.png'])
                                  .convert('RGB'))
    save('tiny.png', Image.fromarray(rgb[:10, :10]))
    ref['tiny.png'] = rgb[:10, :10]
    return str(root), paths, ref


@pytest.fixture
def bad_folder(tmp_path):
    return make_bad_folder(tmp_path / 'data')


@pytest.fixture
def log_records():
    """Records of the current MMLogger (a fresh instance per test)."""
    logger = MMLogger.get_instance(f'test_bad_data_{uuid.uuid4().hex}')
    records = []
    handler = logging.Handler(level=logging.WARNING)
    handler.emit = records.append
    logger.addHandler(handler)
    yield records
    logger.removeHandler(handler)


def pipeline(skip_bad=True):
    return [
        dict(type='RobustLoadImageFromFile', skip_bad=skip_bad),
        dict(type='RandomResizedCrop', scale=32),
        dict(type='RandomFlip', prob=0.5, direction='horizontal'),
        dict(type='BootMAEMaskGenerator', img_size=32, patch_size=8,
             num_masking_patches=12, num_block_masking_patches=8,
             min_num_patches=2, max_num_patches=6),
        dict(type='PackInputs'),
    ]


def test_odd_formats_become_3channel_uint8(bad_folder):
    _, paths, ref = bad_folder
    for color_type in ('color', 'unchanged'):
        load = TRANSFORMS.build(
            dict(type='RobustLoadImageFromFile', color_type=color_type))
        for name, rgb in ref.items():
            img = load(dict(img_path=paths[name]))['img']
            assert img.dtype == np.uint8 and img.shape == rgb.shape, name
            diff = np.abs(img[..., ::-1].astype(int) - rgb).mean()  # BGR
            assert diff < 3, (name, color_type, diff)
        assert load.num_skipped == 0
    load = TRANSFORMS.build(
        dict(type='RobustLoadImageFromFile', to_float32=True))
    img = load(dict(img_path=paths['g16.png']))['img']
    assert img.dtype == np.float32 and img.max() <= 255
    assert (img == ref['g16.png']).all()


def test_16bit_grey_reads_the_same_with_the_pillow_backend(bad_folder):
    """mmcv's Pillow path clipped every 16-bit sample to 255 (an all-white
    picture); the high byte is kept as with cv2."""
    _, paths, ref = bad_folder
    for backend in ('cv2', 'pillow'):
        load = TRANSFORMS.build(dict(type='RobustLoadImageFromFile',
                                     imdecode_backend=backend))
        results = load(dict(img_path=paths['g16.png']))
        assert results['img'].dtype == np.uint8, backend
        assert (results['img'] == ref['g16.png']).all(), backend
        assert results['img_shape'] == results['ori_shape'] == (30, 20)
    # other images still go through mmcv's Pillow decoding
    results = load(dict(img_path=paths['gray.jpg']))
    assert np.abs(results['img'].astype(int) - ref['gray.jpg']).mean() < 3


def test_a_folder_of_only_unreadable_files_names_the_folder(tmp_path,
                                                             log_records):
    """Every file bad (a wrong data root, a folder of another format):
    mmengine re-drew 1000 times and said "Cannot find valid image" without
    a folder; the transform stops after ``max_skipped_in_a_row`` naming the
    folder and the last files."""
    for cls in ('a', 'b'):
        os.makedirs(tmp_path / 'data' / cls)
        for i in range(3):
            (tmp_path / 'data' / cls / f'{i}.jpg').write_text('not an image')
    dataset = CustomDataset(data_root=str(tmp_path / 'data'), pipeline=[
        dict(type='RobustLoadImageFromFile', max_skipped_in_a_row=20),
        dict(type='PackInputs')])
    with pytest.raises(UnreadableImageError) as info:
        dataset[0]
    message = str(info.value)
    assert f'is the data root {tmp_path / "data"} right?' in message
    assert '20 image files in a row could not be read' in message
    assert re.search(re.escape(str(tmp_path / 'data')) + r'/[ab]/\d\.jpg',
                     message)


def test_dataloader_skips_bad_files_with_named_warnings(bad_folder,
                                                        log_records):
    root, paths, _ = bad_folder
    np.random.seed(0)  # BaseDataset re-draws indices with numpy
    dataset = CustomDataset(data_root=root, pipeline=pipeline())
    assert len(dataset) == 4 + 3 + 6
    loader = DataLoader(dataset, batch_size=4, num_workers=0,
                        sampler=SequentialSampler(dataset),
                        collate_fn=pseudo_collate)
    outputs = []
    for batch in loader:
        for img, sample in zip(batch['inputs'], batch['data_samples']):
            assert img.dtype == torch.uint8 and img.shape == (3, 32, 32)
            assert sample.mask.shape == (4, 4)
            assert int(sample.mask.sum()) == 12
            outputs.append(osp.basename(sample.img_path))
    assert len(outputs) == len(dataset)
    assert not set(outputs) & set(BAD)

    messages = [r.getMessage() for r in log_records]
    for name in BAD:  # every bad file is reported by name
        assert any(paths[name] in m for m in messages), name
    # the running count goes 1, 2, 3, ... (a re-drawn bad index counts too)
    counts = [int(re.search(r'(\d+) unreadable file', m).group(1))
              for m in messages]
    assert counts == list(range(1, len(counts) + 1))
    assert counts[-1] >= 3
    assert dataset.pipeline.transforms[0].num_skipped == counts[-1]


def test_skip_bad_false_raises_on_first_bad_file(bad_folder, log_records):
    root, _, _ = bad_folder
    dataset = CustomDataset(data_root=root, pipeline=pipeline(False))
    files = [dataset.get_data_info(i)['img_path'] for i in range(len(dataset))]
    first_bad = next(f for f in files if osp.basename(f) in BAD)
    loader = DataLoader(dataset, batch_size=1, num_workers=0,
                        sampler=SequentialSampler(dataset),
                        collate_fn=pseudo_collate)
    with pytest.raises(UnreadableImageError, match=re.escape(first_bad)):
        for _ in loader:
            pass
    assert not log_records


def test_training_runs_through_bad_folder(bad_folder, tmp_path):
    """A real mmengine Runner trains over the folder and ends normally; the
    skipped files are named in its log file."""
    from mmengine.config import Config
    from mmengine.runner import Runner

    from helpers.classifier import tiny_classifier_train_cfg

    root, paths, _ = bad_folder
    cfg = tiny_classifier_train_cfg(
        root, work_dir=tmp_path / 'work', max_iters=8, batch_size=4,
        checkpoint_interval=100)
    cfg['train_dataloader']['dataset']['pipeline'] = [
        dict(type='RobustLoadImageFromFile'),
        dict(type='RandomResizedCrop', scale=32),
        dict(type='PackInputs'),
    ]
    cfg['train_dataloader']['sampler'] = dict(type='DefaultSampler',
                                              shuffle=False)
    runner = Runner.from_cfg(Config(cfg))
    runner.train()
    assert runner.iter == 8
    log = open(runner.logger.handlers[-1].baseFilename).read()
    assert all(paths[name] in log for name in BAD)
    assert 'unreadable file(s) skipped so far' in log


def test_dangling_symlinks_are_named(bad_folder, log_records):
    """A folder dataset leaves a link to a removed file out without a word;
    the check before a run names it (config key and path)."""
    from mmengine.config import Config

    from bootmae_mm.engine.run_config import check_data_paths
    root, paths, _ = bad_folder
    link = osp.join(root, 'a', 'moved.jpg')
    os.symlink(osp.join(root, 'gone', 'moved.jpg'), link)
    os.symlink(paths['gray.jpg'], osp.join(root, 'a', 'fine.jpg'))
    dataset = CustomDataset(data_root=root, pipeline=[])
    files = [dataset.get_data_info(i)['img_path'] for i in range(len(dataset))]
    assert link not in files and osp.join(root, 'a', 'fine.jpg') in files
    cfg = Config(dict(train_dataloader=dict(dataset=dict(
        type='SeededDataset', dataset=dict(type='CustomDataset',
                                           data_root=root)))))
    check_data_paths(cfg, 'train')
    messages = [r.getMessage() for r in log_records]
    assert len(messages) == 1, messages
    assert messages[0].startswith(
        'train_dataloader.dataset.dataset.data_root: 1 symbolic link(s) '
        f'under {root} point to nothing'), messages
    assert messages[0].endswith(link)
