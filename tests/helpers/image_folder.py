"""A tiny ImageNet-layout image folder of random pictures."""
import os
import os.path as osp

import numpy as np


def make_image_folder(root, classes=('cat', 'dog'), per_class=8, size=32,
                      ext='png', seed=0):
    """Write an ImageNet-layout folder ``root/<class>/<i>.<ext>`` of random
    RGB images and return ``root`` (a str).

    mmpretrain's ``CustomDataset(data_root=root)`` (no ``ann_file``) reads it
    with one class per sub-folder, in sorted order.
    """
    import cv2
    rng = np.random.default_rng(seed)
    root = str(root)
    for cls in classes:
        os.makedirs(osp.join(root, cls), exist_ok=True)
        for i in range(per_class):
            img = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
            assert cv2.imwrite(osp.join(root, cls, f'{i:03d}.{ext}'), img)
    return root


def make_mixed_picture_folder(root, seed=0):
    """A flat folder of pictures as a user's folder holds them: jpg, png,
    bmp, webp, tif in several sizes and colour modes (RGB, grey, grey +
    alpha, RGBA, palette, CMYK, 16-bit grey, 16-bit RGB), one upper-case
    ending, plus a text file that is not an image. Returns (root, the
    image file names)."""
    import cv2
    from PIL import Image
    rng = np.random.default_rng(seed)
    root = str(root)
    os.makedirs(root, exist_ok=True)

    def rgb(h, w):
        return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)

    pil = {
        'rgb_large.jpg': Image.fromarray(rgb(300, 200)),
        'grey.png': Image.fromarray(rgb(40, 50)[..., 0]),
        'grey_alpha.png': Image.fromarray(rgb(33, 33)[..., :2], 'LA'),
        'rgba.png': Image.fromarray(
            rng.integers(0, 256, (40, 30, 4), dtype=np.uint8)),
        'palette.png': Image.fromarray(rgb(24, 36)).convert(
            'P', palette=Image.ADAPTIVE, colors=16),
        'cmyk.jpg': Image.fromarray(rgb(48, 48)).convert('CMYK'),
        'tiny.bmp': Image.fromarray(rgb(7, 10)),
        'photo.webp': Image.fromarray(rgb(64, 80)),
        'scan.tif': Image.fromarray(rgb(50, 40)),
        'UPPER.JPG': Image.fromarray(rgb(32, 32)),
        'grey16.png': Image.fromarray(
            rng.integers(0, 65536, (36, 36), dtype=np.uint16)),
    }
    for name, img in pil.items():
        img.save(osp.join(root, name))
    # 16-bit colour: Pillow cannot write it, OpenCV can
    assert cv2.imwrite(osp.join(root, 'rgb16.png'), rng.integers(
        0, 65536, (30, 45, 3), dtype=np.uint16))
    with open(osp.join(root, 'notes.txt'), 'w') as f:
        f.write('not an image\n')
    return root, sorted(list(pil) + ['rgb16.png'])
