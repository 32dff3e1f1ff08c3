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
