"""Load an image file's encoded bytes, leaving decoding to the model side."""
import io
from typing import Optional

import mmengine.fileio as fileio
import numpy as np
from mmcv.transforms import BaseTransform
from mmengine.logging import MMLogger
from mmpretrain.registry import TRANSFORMS
from PIL import Image


@TRANSFORMS.register_module()
class LoadImageBytes(BaseTransform):
    """Read an image file's raw (still encoded) bytes into ``results['img']``.

    The first transform of the GPU decode path: the data loader workers only
    read files (and build masks), and
    :class:`~bootmae_mm.feeding.gpu_decode.GPUDecodeDataPreprocessor`
    decodes, crops, flips and normalizes the whole batch on the model's
    device. Use ``pseudo_collate`` in the data loader, since files differ in
    length. :class:`mmpretrain.datasets.PackInputs` turns the array into a
    1-D ``torch.uint8`` tensor.

    **Required Keys:** ``img_path``

    **Added Keys:** ``img`` (1-D ``np.uint8`` array of the file's bytes),
    ``ori_shape`` ((H, W), only with ``read_shape=True``).

    A file that is empty, unreadable or (with ``read_shape``) has no image
    header is, with ``skip_bad=True``, reported with a warning naming it
    and a running count, and the transform returns None: mmengine's
    ``BaseDataset`` then draws another index, as for
    ``RobustLoadImageFromFile``. A file whose header reads but whose data
    is broken (e.g. a truncated JPEG) is caught when decoded, by
    ``GPUDecodeDataPreprocessor``.

    Args:
        read_shape (bool): Also store the image size read from the file
            header (PIL parses the header only, no decoding); this checks
            early that the file is an image. Defaults to True.
        skip_bad (bool): Skip bad files with a warning instead of raising
            a ``ValueError`` naming the file. Defaults to True.
        backend_args (dict, optional): Arguments to instantiate the
            mmengine file backend, as in ``LoadImageFromFile``.
            Defaults to None.
    """

    def __init__(self,
                 read_shape: bool = True,
                 skip_bad: bool = True,
                 backend_args: Optional[dict] = None) -> None:
        self.read_shape = read_shape
        self.skip_bad = skip_bad
        self.num_skipped = 0
        self.backend_args = None if backend_args is None \
            else backend_args.copy()

    def transform(self, results: dict) -> Optional[dict]:
        filename = results['img_path']
        try:
            data = fileio.get(filename, backend_args=self.backend_args)
            if len(data) == 0:
                raise ValueError(f'LoadImageBytes: empty file {filename}')
            if self.read_shape:
                try:
                    width, height = Image.open(io.BytesIO(data)).size
                except Exception as err:  # PIL raises several error types
                    raise ValueError(f'LoadImageBytes: {filename} is not a '
                                     f'readable image ({err})') from err
                results['ori_shape'] = (height, width)
        except Exception as err:  # missing file, empty, no image header
            if not self.skip_bad:
                if isinstance(err, ValueError):
                    raise
                raise ValueError(f'LoadImageBytes: cannot read {filename} '
                                 f'({err!r})') from err
            self.num_skipped += 1
            MMLogger.get_current_instance().warning(
                f'Skipped unreadable image file {filename} ({err}); '
                f'{self.num_skipped} unreadable file(s) skipped so far in '
                'this process')
            return None
        # A writable copy, so ``torch.from_numpy`` in PackInputs is safe.
        results['img'] = np.frombuffer(data, dtype=np.uint8).copy()
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(read_shape={self.read_shape}, '
                f'skip_bad={self.skip_bad}, '
                f'backend_args={self.backend_args})')
