"""The main job (README "Main job"): embedded demo data, the demo config run
through tools/train.py (shortened), its artefacts, the reconstruction
pictures and the two evaluation / visualization tools."""
import json
import os
import os.path as osp

import numpy as np
import pytest
import torch
from PIL import Image

from helpers.repo import REPO_ROOT, load_tool, run_tool

DEMO_CONFIG = osp.join(REPO_ROOT, 'configs/demo/bootmae_vit-tiny_demo.py')


def _tool(name):
    """Import tools/<name>.py as a module (runs in this process: faster)."""
    return load_tool(f'tools/{name}.py')


def _small_data(root):
    """Options that point the demo config at a tiny drawn data set."""
    key = 'train_dataloader.dataset.dataset'
    return [f'{key}.root={root}', f'{key}.num_train=2', f'{key}.num_val=1']


# ---------------------------------------------------------------------------
# demo data
# ---------------------------------------------------------------------------
def test_demo_data_imagenet_layout_deterministic_idempotent(tmp_path):
    from mmpretrain.datasets import CustomDataset

    from bootmae_mm.datasets.demo_pictures import (
        DEMO_CLASSES,
        make_demo_dataset,
    )
    root = str(tmp_path / 'demo')
    make_demo_dataset(root, num_train=3, num_val=2, img_size=32)
    for split, count in (('train', 3), ('val', 2)):
        for cls in DEMO_CLASSES:
            files = sorted(os.listdir(osp.join(root, split, cls)))
            assert files == [f'{i:04d}.png' for i in range(count)]
    img = np.asarray(Image.open(osp.join(root, 'val/rings/0001.png')))
    assert img.shape == (32, 32, 3) and img.dtype == np.uint8
    # the real mmpretrain dataset reads it, labels from the folders
    val = CustomDataset(data_root=root, data_prefix='val')
    assert len(val) == 2 * len(DEMO_CLASSES)
    assert val.CLASSES == tuple(sorted(DEMO_CLASSES))
    assert sorted({val.get_data_info(i)['gt_label']
                   for i in range(len(val))}) == list(range(6))
    # train and val pictures differ; a second call leaves the folder alone
    train0 = np.asarray(Image.open(osp.join(root, 'train/rings/0000.png')))
    val0 = np.asarray(Image.open(osp.join(root, 'val/rings/0000.png')))
    assert not np.array_equal(train0, val0)
    probe = osp.join(root, 'train/rings/0000.png')
    stamp = os.stat(probe).st_mtime_ns
    make_demo_dataset(root, num_train=3, num_val=2, img_size=32)
    assert os.stat(probe).st_mtime_ns == stamp
    # other settings redraw it; the same settings give the same pixels
    make_demo_dataset(root, num_train=1, num_val=1, img_size=32,
                      classes=('rings', 'squares'))
    assert sorted(os.listdir(osp.join(root, 'train'))) == ['rings',
                                                            'squares']
    assert os.listdir(osp.join(root, 'train/rings')) == ['0000.png']
    again = np.asarray(Image.open(probe))
    assert np.array_equal(again, train0)
    with pytest.raises(ValueError, match='unknown classes'):
        make_demo_dataset(root, classes=('dragons', ))


# ---------------------------------------------------------------------------
# reconstruction picture
# ---------------------------------------------------------------------------
def test_reconstruction_denormalizes_per_patch_and_pastes(monkeypatch):
    """With a decoder that predicts exactly the per-patch normalized target,
    the de-normalized prediction is the original image; the pasted image
    keeps visible patches and takes masked ones from the prediction."""
    from mmengine.config import Config
    from mmpretrain.registry import MODELS

    import bootmae_mm  # noqa: F401
    from bootmae_mm.models.heads.bootmae_heads import (
        normalize_per_patch,
        patchify,
    )
    from bootmae_mm.visualization import (
        _unpatchify,
        make_reconstruction_grid,
        reconstruct,
    )
    cfg = Config.fromfile(DEMO_CONFIG)
    model = MODELS.build(cfg.model).eval()
    imgs = torch.randn(2, 3, 64, 64)
    mask = torch.zeros(2, 8, 8, dtype=torch.bool)
    mask.view(2, -1)[:, :48] = True

    def perfect(latent, context, mask):
        return _unpatchify(normalize_per_patch(patchify(imgs, 8)), 8, 8)

    monkeypatch.setattr(model.pixel_decoder, 'forward', perfect)
    out = reconstruct(model, imgs, mask)
    assert torch.allclose(out['prediction'], imgs, atol=1e-3)
    assert torch.equal(out['pasted'][:, :, 56:, :],  # last row: visible
                       imgs[:, :, 56:, :])
    grid = make_reconstruction_grid(model, imgs, mask, [127.5] * 3,
                                    [127.5] * 3, scale=2, pad=2)
    assert grid.shape == (2 * 130 + 2, 4 * 130 + 2, 3)
    # columns start at x = 2, 132, 262, 392
    original, masked = grid[2:130, 2:130], grid[2:130, 132:260]
    prediction = grid[2:130, 262:390]
    assert np.abs(original.astype(int) - prediction).max() <= 1
    assert (masked[:10, :10] == 128).all()  # a masked patch is grey


# ---------------------------------------------------------------------------
# the demo, shortened, through tools/train.py
# ---------------------------------------------------------------------------
@pytest.fixture(scope='module')
def demo_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('demo')
    data, work = tmp / 'data', tmp / 'work'
    # 6 classes x 2 pictures, batch 4: 3 iterations; a grid at 2 and at 3
    proc = run_tool([
        'tools/train.py', DEMO_CONFIG, '--work-dir', str(work),
        '--cfg-options', 'train_cfg.max_epochs=1',
        'train_dataloader.batch_size=4', 'train_dataloader.num_workers=0',
        'default_hooks.logger.interval=1', 'custom_hooks.2.interval=2',
        *_small_data(data)
    ], timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:]
    return dict(data=data, work=work, log=proc.stdout)


def test_demo_run_writes_every_artefact(demo_run):
    from bootmae_mm.interop.checkpoint_files import safe_torch_load
    work, data = demo_run['work'], demo_run['data']
    assert osp.isdir(data / 'train' / 'circles')  # drawn on first use
    assert 'eta:' in demo_run['log']

    ckpt = safe_torch_load(str(work / 'epoch_1.pth'))
    keys = ckpt['state_dict'].keys()
    for prefix in ('backbone.', 'pixel_decoder.', 'feature_decoder.',
                   'target_encoder.'):
        assert any(k.startswith(prefix) for k in keys), prefix
    assert (work / 'last_checkpoint').read_text().strip().endswith(
        'epoch_1.pth')

    scalars = [p for p in work.glob('*/vis_data/scalars.json')]
    assert len(scalars) == 1
    records = [json.loads(line) for line in scalars[0].read_text().split(
        '\n') if line.strip()]
    # the representation monitor's records: before training and at the end
    monitor = [r for r in records if 'knn/top1' in r]
    assert [r['step'] for r in monitor] == [0, 3]
    assert all(0 <= r['knn/top1'] <= 100 and r['rankme'] >= 1
               for r in monitor)
    records = [r for r in records if 'knn/top1' not in r]
    assert len(records) == 3
    for key in ('loss_pixel', 'loss_feature', 'feature_weight', 'momentum',
                'lr'):
        assert all(np.isfinite(r[key]) for r in records), key
    assert records[0]['momentum'] == pytest.approx(0.99)

    # 6 rows (one per class), 64 px cells upscaled x2, 2 px padding
    for step in (2, 3):
        grid = Image.open(work / 'vis' / f'iter_{step:06d}.png')
        assert grid.size == (4 * 130 + 2, 6 * 130 + 2)
        assert grid.mode == 'RGB'
    assert len(list(work.glob('*/vis_data/vis_image/reconstruction_3.png')))
    # 3 columns of 400 px; 8 panels (6 training curves, knn/top1, rankme)
    # make 3 rows of 300 px
    curves = Image.open(work / 'curves.png')
    assert curves.size == (1200, 900)


# ---------------------------------------------------------------------------
# tools
# ---------------------------------------------------------------------------
def test_visualize_tool_on_any_image(demo_run, tmp_path):
    tool = _tool('visualize_reconstruction')
    image = tmp_path / 'photo.jpg'
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (90, 120, 3), dtype=np.uint8)).save(
        image)
    out = tmp_path / 'out' / 'grid.png'
    tool.main([DEMO_CONFIG, str(demo_run['work'] / 'epoch_1.pth'),
               str(image), '--out', str(out), '--seed', '3'])
    grid = Image.open(out)
    assert grid.size == (4 * 130 + 2, 130 + 2)


def test_visualize_tool_refuses_unreadable_image(demo_run, tmp_path):
    tool = _tool('visualize_reconstruction')
    bad = tmp_path / 'not_an_image.jpg'
    bad.write_text('hello')
    ckpt = str(demo_run['work'] / 'epoch_1.pth')
    for path in (bad, tmp_path / 'missing.png'):
        with pytest.raises(SystemExit) as e:
            tool.main([DEMO_CONFIG, ckpt, str(path)])
        assert 'Cannot read image' in str(e.value)
        assert str(path) in str(e.value)


def test_visualize_tool_refuses_mismatched_checkpoint(demo_run, tmp_path):
    from bootmae_mm.interop.checkpoint_files import safe_torch_load
    tool = _tool('visualize_reconstruction')
    state = safe_torch_load(str(demo_run['work'] / 'epoch_1.pth'))[
        'state_dict']
    state = {k: v for k, v in state.items()
             if not k.startswith('backbone.layers.3.')}
    state['pixel_decoder.decoder_embed.weight'] = torch.zeros(64, 128)
    other = tmp_path / 'other_arch.pth'
    torch.save(dict(state_dict=state), other)
    image = tmp_path / 'img.png'
    Image.new('RGB', (64, 64)).save(image)
    with pytest.raises(SystemExit) as e:
        tool.main([DEMO_CONFIG, str(other), str(image)])
    msg = str(e.value)
    assert str(other) in msg and 'does not fit the config' in msg
    assert 'pixel_decoder.decoder_embed.weight: checkpoint (64, 128) vs ' \
           'config (128, 128)' in msg
    assert 'missing keys' in msg and 'backbone.layers.3.ln1.weight' in msg


def test_knn_tool_compares_pretrained_and_random(demo_run, capsys):
    tool = _tool('knn_eval')
    results = tool.main([
        DEMO_CONFIG, str(demo_run['work'] / 'epoch_1.pth'), '--k', '3',
        '--cfg-options', *_small_data(demo_run['data'])])
    out = capsys.readouterr().out
    assert 'random encoder top-1:' in out
    assert 'pretrained encoder top-1:' in out
    assert '12 train images as the bank, 6 val images as queries' in out
    for accs in results.values():
        assert set(accs) == {'mean', 'cls'}
        assert all(0 <= a <= 100 for a in accs.values())
