"""Image loading that survives odd and broken files in large folders."""
import io
import os.path as osp
from collections import deque
from typing import Optional

import numpy as np
from mmcv.transforms import LoadImageFromFile
from mmengine import fileio
from mmengine.logging import MMLogger
from mmpretrain.registry import TRANSFORMS


class UnreadableImageError(OSError):
    """An image file that cannot be decoded (named in the message)."""


def to_3channel_uint8(img: np.ndarray) -> np.ndarray:
    """Turn a decoded image into an ``(H, W, 3)`` uint8 array.

    Grey images are replicated to 3 channels, an alpha channel is dropped,
    and 16-bit samples keep their high byte (as OpenCV's ``IMREAD_COLOR``).
    Channel order is left as decoded.
    """
    if img.dtype == np.uint16:
        img = (img >> 8).astype(np.uint8)
    elif img.dtype != np.uint8:
        raise ValueError(f'unsupported sample type {img.dtype}')
    if img.ndim == 2:
        img = img[..., None]
    if img.ndim != 3 or img.shape[2] not in (1, 2, 3, 4):
        raise ValueError(f'unsupported image shape {img.shape}')
    if img.shape[2] in (1, 2):  # grey, grey + alpha
        img = np.repeat(img[..., :1], 3, axis=2)
    return np.ascontiguousarray(img[..., :3])


def pillow_16bit_grey(data: bytes) -> Optional[np.ndarray]:
    """The samples of a 16-bit grey image (PNG, TIFF) decoded with Pillow
    as a uint16 ``(H, W)`` array, or None for any other image. (mmcv's
    Pillow path converts such an image to RGB, which clips every sample
    above 255: a 16-bit picture became all white.)"""
    from PIL import Image
    with Image.open(io.BytesIO(data)) as img:
        if not (img.mode.startswith('I;16') or img.mode == 'I'):
            return None
        samples = np.asarray(img)
    return np.clip(samples, 0, 65535).astype(np.uint16)


@TRANSFORMS.register_module()
class RobustLoadImageFromFile(LoadImageFromFile):
    """``LoadImageFromFile`` that always yields a 3-channel uint8 image and
    skips unreadable files.

    Readable odd formats (grey, CMYK JPEG, 16-bit PNG, RGBA, palette) become
    3-channel 8-bit images in the parent's channel order (BGR with the default
    cv2 decoder, which already converts them for ``color_type='color'``; the
    conversion also covers other ``color_type`` values). 16-bit grey images
    keep their high byte with either ``imdecode_backend`` ('cv2' or
    'pillow').

    A file that cannot be read or decoded (zero bytes, truncated JPEG, not an
    image at all, missing) is, with ``skip_bad=True``, reported with a
    warning in the current MMLogger naming the file and the number of files
    skipped so far by this process (each data loader worker counts its own),
    and the transform returns None: mmengine's ``BaseDataset`` then draws
    another index in training (up to its ``max_refetch``), and raises in
    test mode. With ``skip_bad=False`` an :class:`UnreadableImageError`
    naming the file is raised instead.

    **Required Keys:** ``img_path``

    **Modified Keys:** ``img``, ``img_shape``, ``ori_shape``

    Args:
        skip_bad (bool): Skip unreadable files with a warning instead of
            raising. Defaults to True.
        to_float32 (bool): Return a float32 image (values 0..255).
            Defaults to False.
        max_skipped_in_a_row (int): Raise an :class:`UnreadableImageError`
            naming the folder and the last files once this many files in a
            row (in this process) could not be read: the data root is
            wrong, not a few files (mmengine would otherwise re-draw 1000
            times and say only "Cannot find valid image"). Defaults to 100.
        **kwargs: Other arguments of ``mmcv.transforms.LoadImageFromFile``
            (``color_type``, ``imdecode_backend``, ``backend_args``, ...).
    """

    def __init__(self,
                 skip_bad: bool = True,
                 to_float32: bool = False,
                 max_skipped_in_a_row: int = 100,
                 **kwargs) -> None:
        # Decode to uint8 first and cast last, so 16-bit input is scaled.
        super().__init__(to_float32=False, **kwargs)
        if max_skipped_in_a_row < 1:
            raise ValueError(f'max_skipped_in_a_row={max_skipped_in_a_row}'
                             ' must be >= 1.')
        self.skip_bad = skip_bad
        self.output_float32 = to_float32
        self.max_skipped_in_a_row = max_skipped_in_a_row
        self.num_skipped = 0
        self.skipped_in_a_row = deque(maxlen=max_skipped_in_a_row)

    def _load(self, results: dict) -> Optional[dict]:
        if self.imdecode_backend == 'pillow':
            data = fileio.get(results['img_path'],
                              backend_args=self.backend_args)
            grey = pillow_16bit_grey(data)
            if grey is not None:
                results['img'] = grey
                results['img_shape'] = results['ori_shape'] = grey.shape[:2]
                return results
        return super().transform(results)

    def transform(self, results: dict) -> Optional[dict]:
        filename = results['img_path']
        try:
            loaded = self._load(results)
            if loaded is None:  # the parent's ``ignore_empty`` case
                return None
            img = to_3channel_uint8(loaded['img'])
        except Exception as err:  # decoders raise many error types
            if not self.skip_bad:
                raise UnreadableImageError(
                    f'cannot read image file {filename}: {err!r} (set '
                    'skip_bad=True in RobustLoadImageFromFile to skip '
                    'unreadable files)') from err
            self.num_skipped += 1
            self.skipped_in_a_row.append(filename)
            MMLogger.get_current_instance().warning(
                f'Skipped unreadable image file {filename} ({err!r}); '
                f'{self.num_skipped} unreadable file(s) skipped so far in '
                'this process')
            if len(self.skipped_in_a_row) == self.max_skipped_in_a_row:
                files = list(self.skipped_in_a_row)
                folder = osp.commonpath([osp.abspath(f) for f in files])
                raise UnreadableImageError(
                    f'{len(files)} image files in a row could not be read '
                    f'(e.g. {", ".join(files[-3:])}), none readable in '
                    f'between: is the data root {folder} right? The last '
                    f'error: {err!r}') from err
            return None
        self.skipped_in_a_row.clear()
        if self.output_float32:
            img = img.astype(np.float32)
        loaded['img'] = img
        return loaded

    def __repr__(self) -> str:
        return (super().__repr__()[:-1] + f', skip_bad={self.skip_bad}, '
                f'output_float32={self.output_float32}, '
                f'max_skipped_in_a_row={self.max_skipped_in_a_row})')
