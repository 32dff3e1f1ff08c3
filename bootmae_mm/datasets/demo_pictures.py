"""The embedded demo pictures: a small labelled image set that the project
draws itself (seeded, so every machine gets the same pixels), written in
ImageNet layout ``root/{train,val}/<class>/<index>.png``. The dataset that
reads them is ``BootMAEDemoDataset`` (``bootmae_demo_dataset.py``).

Why generated rather than downloaded or taken from a dependency: it needs
nothing but numpy and Pillow, it has labels (scikit-image's sample photos
are a dozen unrelated pictures, too few and without classes for a k-NN
check), and its classes differ in *shape and texture* while colours,
positions and scales are random, so raw colour statistics do not give the
class away and an encoder that learned structure shows it in k-NN accuracy.
"""
import json
import os
import os.path as osp
import shutil
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw

#: The classes, each a kind of picture (see :func:`draw_demo_image`).
DEMO_CLASSES = ('circles', 'squares', 'triangles', 'stripes', 'checkers',
                'rings')

_MARKER = '.bootmae_demo.json'


def _colour(rng, avoid=None):
    """A random RGB colour, far enough from ``avoid`` to be seen."""
    while True:
        c = rng.integers(0, 256, 3)
        if avoid is None or np.abs(c - avoid).sum() > 180:
            return tuple(int(v) for v in c)


def _background(rng, size):
    """A random two-colour linear gradient (no noise: the pixel target is
    normalized per patch, which would turn noise in flat patches into an
    unpredictable target)."""
    a, b = np.array(_colour(rng)), np.array(_colour(rng))
    angle = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:size, 0:size] / size
    t = (np.cos(angle) * xx + np.sin(angle) * yy)
    t = (t - t.min()) / (np.ptp(t) + 1e-6)
    img = a * (1 - t[..., None]) * 0.5 + b * t[..., None] * 0.5 + 64
    return img.clip(0, 255).astype(np.uint8), img.mean((0, 1))


def _wave(rng, size, kind):
    """A two-colour periodic texture: ``stripes``, ``checkers`` or
    ``rings``, with random period, orientation / centre and phase."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    period = rng.uniform(size / 7, size / 3)
    phase = rng.uniform(0, 2 * np.pi)
    if kind == 'rings':
        cy, cx = rng.uniform(0.2, 0.8, 2) * size
        field = np.sin(2 * np.pi * np.hypot(yy - cy, xx - cx) / period + phase)
    else:
        angle = rng.uniform(0, np.pi)
        u = np.cos(angle) * xx + np.sin(angle) * yy
        field = np.sin(2 * np.pi * u / period + phase)
        if kind == 'checkers':
            v = -np.sin(angle) * xx + np.cos(angle) * yy
            field = field * np.sin(2 * np.pi * v / period + phase)
    a = np.array(_colour(rng))
    b = np.array(_colour(rng, avoid=a))
    return np.where(field[..., None] > 0, a, b).astype(np.uint8)


def _shapes(rng, size, kind):
    """One to three filled ``circles``, ``squares`` or ``triangles`` of
    random colour, size, position (and rotation) on a random background."""
    bg, bg_mean = _background(rng, size)
    img = Image.fromarray(bg)
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(1, 4))):
        r = rng.uniform(0.12, 0.3) * size
        cx, cy = rng.uniform(r, size - r, 2)
        fill = _colour(rng, avoid=bg_mean)
        if kind == 'circles':
            draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
        else:
            n = 4 if kind == 'squares' else 3
            start = rng.uniform(0, 2 * np.pi)
            pts = [(cx + r * np.cos(start + 2 * np.pi * k / n),
                    cy + r * np.sin(start + 2 * np.pi * k / n))
                   for k in range(n)]
            draw.polygon(pts, fill=fill)
    return np.asarray(img)


def draw_demo_image(label: int, size: int = 64, seed: int = 0) -> np.ndarray:
    """Draw one ``(size, size, 3)`` uint8 RGB picture of class
    ``DEMO_CLASSES[label]``; the same ``(label, size, seed)`` always gives
    the same pixels."""
    kind = DEMO_CLASSES[label]
    rng = np.random.default_rng([seed, label])
    if kind in ('stripes', 'checkers', 'rings'):
        return _wave(rng, size, kind)
    return _shapes(rng, size, kind)


def make_demo_dataset(root: str,
                      num_train: int = 100,
                      num_val: int = 50,
                      img_size: int = 64,
                      classes: Sequence[str] = DEMO_CLASSES,
                      seed: int = 0) -> str:
    """Write the demo set to ``root`` (ImageNet layout) unless it is already
    there with the same settings, and return ``root``.

    ``root/train/<class>/<i>.png`` (``num_train`` per class) and
    ``root/val/<class>/<i>.png`` (``num_val`` per class); mmpretrain's
    ``CustomDataset(data_root=root, data_prefix='train')`` (or ``ImageNet(
    data_root=root, split='train', metainfo=dict(classes=...))``) reads it
    as is. A marker file
    written last records the settings, so an interrupted or differently
    sized folder is redrawn and a complete one is left untouched.

    Args:
        root (str): the folder to write, e.g. ``data/demo``.
        num_train (int): training pictures per class. Defaults to 100.
        num_val (int): validation pictures per class. Defaults to 50.
        img_size (int): picture side in pixels. Defaults to 64.
        classes (Sequence[str]): a subset of :data:`DEMO_CLASSES`.
        seed (int): base seed; the val pictures use other seeds than the
            train ones. Defaults to 0.
    """
    unknown = sorted(set(classes) - set(DEMO_CLASSES))
    if unknown or not classes:
        raise ValueError(f'make_demo_dataset: unknown classes {unknown}; '
                         f'choose from {DEMO_CLASSES}.')
    if num_train < 1 or num_val < 1 or img_size < 8:
        raise ValueError('make_demo_dataset: num_train and num_val must be '
                         '>= 1 and img_size >= 8.')
    settings = dict(num_train=num_train, num_val=num_val, img_size=img_size,
                    classes=list(classes), seed=seed, version=2)
    marker = osp.join(root, _MARKER)
    if osp.isfile(marker):
        with open(marker) as f:
            if json.load(f) == settings:
                return root
        os.remove(marker)
    for split, count, offset in (('train', num_train, 0),
                                 ('val', num_val, 1_000_000)):
        for cls in set(DEMO_CLASSES) - set(classes):  # of other settings
            shutil.rmtree(osp.join(root, split, cls), ignore_errors=True)
        for cls in classes:
            folder = osp.join(root, split, cls)
            os.makedirs(folder, exist_ok=True)
            for name in os.listdir(folder):  # stale files of other settings
                if name.endswith('.png'):
                    os.remove(osp.join(folder, name))
            label = DEMO_CLASSES.index(cls)
            for i in range(count):
                img = draw_demo_image(label, img_size, seed * 10_000_000 +
                                      offset + i)
                Image.fromarray(img).save(osp.join(folder, f'{i:04d}.png'))
    with open(marker, 'w') as f:
        json.dump(settings, f)
    return root
