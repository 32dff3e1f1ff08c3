"""Decode JPEG bytes, crop, resize and flip them on the model's device."""
import io
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from mmengine.logging import MMLogger
from mmpretrain.models.utils.data_preprocessor import SelfSupDataPreprocessor
from mmpretrain.registry import MODELS
from PIL import Image
from torchvision.io import ImageReadMode, decode_image, decode_jpeg

from ..models.data_preprocessors import PreparedBatch, attach_masks
from .batched_crop import batched_resized_crop
from .crop_box import (
    check_crop_args,
    sample_crop_boxes,
)

_JPEG_MAGIC = b'\xff\xd8\xff'


@MODELS.register_module()
class GPUDecodeDataPreprocessor(SelfSupDataPreprocessor):
    """Decode, randomly crop, flip and normalize a batch of encoded images.

    For when CPU decoding in the data loader cannot keep up with the training
    step: the pipeline only reads bytes and draws the crop boxes
    (``LoadImageBytes`` -> ``RandomResizedCropBox`` -> the mask generator ->
    ``PackInputs(meta_keys=(..., 'crop_box', 'flip'))``), the data loader
    collates with ``mask_collate`` (``inputs='list'``) or ``pseudo_collate``.
    This preprocessor then, on the model's device:

    1. decodes all JPEGs of the batch in one
       ``torchvision.io.decode_jpeg(list, device=...)`` call (nvjpeg on
       CUDA, libjpeg-turbo on CPU); other formats (PNG, WebP, GIF, then
       anything PIL reads) are decoded on the CPU and moved to the device.
       A file that cannot be decoded (e.g. a truncated JPEG) costs one
       sample, as on the CPU pipeline: a warning names it and the sample is
       replaced by the next good sample of the batch (its image, crop, mask
       and data sample), so the batch keeps its size; only a batch with no
       decodable image raises an error naming the files;
    2. crops, resizes to ``size`` (bicubic, antialiased) and flips the whole
       batch in a few batched operations
       (:func:`.batched_crop.batched_resized_crop`),
       rounded to integer 0..255 values like the CPU pipeline's uint8
       images. The boxes and flips are the samples' ``crop_box`` / ``flip``
       metainfo when the pipeline drew them (``RandomResizedCropBox``, in
       the workers, from the sample's seed: the way to exact resumes and
       prefetching); otherwise they are drawn here, with RandomResizedCrop's
       distribution (``scale``, ``ratio``, ``flip_prob``), from torch's
       global random state;
    3. normalizes with ``mean``/``std`` (RGB order, 0-255 scale);
    4. moves the masks that ``mask_collate`` stacked (``data['masks']``) in
       one copy and gives each data sample its row; other data samples'
       tensors are moved as they are.

    A :class:`PreparedBatch` (from the prefetching train loop) is passed
    through. The augmentation is applied whether or not ``training`` is
    set, like the CPU pipeline it replaces. Note: torchvision 0.29 marks its
    image decoders deprecated in favour of TorchCodec; they still work.

    Args:
        size (int | Sequence[int]): Output size, ``int`` or ``(H, W)``.
            Defaults to 224.
        scale (Sequence[float]): Range of the crop's area relative to the
            image, for boxes drawn here. Defaults to (0.2, 1.0).
        ratio (Sequence[float]): Range of the crop's aspect ratio (w / h),
            for boxes drawn here. Defaults to (3 / 4, 4 / 3).
        flip_prob (float): Probability of a horizontal flip, for flips drawn
            here. Defaults to 0.5.
        mean (Sequence[float], optional): RGB pixel mean (0-255 scale).
            Defaults to (127.5, 127.5, 127.5), BootMAE's 0.5 on [0, 1].
            With ``mean=None`` and ``std=None`` the output is not
            normalized (float 0-255).
        std (Sequence[float], optional): RGB pixel std (0-255 scale).
            Defaults to (127.5, 127.5, 127.5).
        non_blocking (bool): Copy masks, data samples and non-JPEG images to
            the device without blocking. Defaults to False.
        max_pixels (int): Pixel budget (per channel) of one batched resize;
            larger batches of crops are resized in groups. Defaults to 2**26.
    """

    accepts_prepared_batches = True

    def __init__(self,
                 size: Union[int, Sequence[int]] = 224,
                 scale: Sequence[float] = (0.2, 1.0),
                 ratio: Sequence[float] = (3 / 4, 4 / 3),
                 flip_prob: float = 0.5,
                 mean: Optional[Sequence[float]] = (127.5, 127.5, 127.5),
                 std: Optional[Sequence[float]] = (127.5, 127.5, 127.5),
                 non_blocking: bool = False,
                 max_pixels: int = 1 << 26):
        super().__init__(mean=mean, std=std, non_blocking=non_blocking)
        self.size = [size, size] if isinstance(size, int) else list(size)
        if len(self.size) != 2:
            raise ValueError(f'GPUDecodeDataPreprocessor: `size` must be an '
                             f'int or (H, W), got {size}')
        check_crop_args(type(self).__name__, scale, ratio, flip_prob)
        self.scale = [float(s) for s in scale]
        self.ratio = [float(r) for r in ratio]
        self.flip_prob = flip_prob
        self.max_pixels = max_pixels
        self.num_skipped = 0

    def forward(self, data: dict, training: bool = False) -> dict:
        """Decode and augment ``data['inputs']`` (list of 1-D uint8 CPU
        tensors of encoded bytes); return ``inputs`` ``(B, 3, H, W)`` float
        and ``data_samples``."""
        if isinstance(data, PreparedBatch):
            return data
        if not isinstance(data, dict) or 'inputs' not in data:
            raise TypeError('GPUDecodeDataPreprocessor expects a dict with '
                            '"inputs" (use mask_collate or pseudo_collate in '
                            'the data loader)')
        inputs = data['inputs']
        if isinstance(inputs, torch.Tensor):  # default_collate, equal lengths
            inputs = list(inputs.reshape(-1, inputs.shape[-1]).unbind(0))
        data_samples = data.get('data_samples')
        if data_samples is not None:
            data_samples = list(data_samples)
        names = self._names(data_samples, len(inputs))
        images, errors = self._decode(inputs, names)
        source = self._replace_bad(images, names, errors)
        boxes, flips = self._boxes(images, data_samples, names)
        if source is not None:
            boxes = [boxes[j] for j in source]
            flips = [flips[j] for j in source]
            images = [images[j] for j in source]
            if data_samples is not None:
                data_samples = [data_samples[j].clone() for j in source]
        batch = batched_resized_crop(images, boxes, flips, self.size,
                                     self.max_pixels)
        if self._enable_normalize:
            batch = (batch - self.mean) / self.std
        if data_samples is not None and any(
                hasattr(value, 'to') for sample in data_samples
                for value in sample.values()):
            # (with the masks collated apart, samples hold only metainfo:
            # mmengine's per-sample copy would cost ~0.3 ms each for nothing)
            data_samples = self.cast_data(data_samples)
        masks = data.get('masks')
        if masks is not None and source is not None:
            masks = masks[torch.as_tensor(source)]
        attach_masks(data_samples, masks, self.device, self._non_blocking)
        return {'inputs': batch, 'data_samples': data_samples}

    @staticmethod
    def _names(data_samples: Optional[list], num: int) -> List[str]:
        """Name each image for error messages (its path when known)."""
        if data_samples is None:
            return [f'batch item {i}' for i in range(num)]
        return [
            getattr(ds, 'metainfo', {}).get('img_path', f'batch item {i}')
            for i, ds in enumerate(data_samples)
        ]

    def _replace_bad(self, images: List[Optional[torch.Tensor]],
                     names: List[str],
                     errors: Dict[int, str]) -> Optional[List[int]]:
        """Warn about each undecodable image; return, per batch position,
        the sample to use (the next good one for a bad one, cyclically), or
        None when all are good."""
        good = [i for i, img in enumerate(images) if img is not None]
        if len(good) == len(images):
            return None
        if not good:
            raise ValueError(
                'GPUDecodeDataPreprocessor: no image of the batch can be '
                'decoded: ' + '; '.join(f'{names[i]} ({errors[i]})'
                                        for i in sorted(errors)))
        source = []
        for i, img in enumerate(images):
            if img is not None:
                source.append(i)
                continue
            source.append(next((j for j in good if j > i), good[0]))
            self.num_skipped += 1
            MMLogger.get_current_instance().warning(
                f'Skipped undecodable image file {names[i]} ({errors[i]}; '
                f'replaced by {names[source[-1]]} of the same batch); '
                f'{self.num_skipped} undecodable file(s) skipped so far by '
                'GPUDecodeDataPreprocessor')
        return source

    def _boxes(self, images: List[Optional[torch.Tensor]],
               data_samples: Optional[list],
               names: List[str]) -> Tuple[List[List[int]], List[bool]]:
        """The crop boxes ``(top, left, height, width)`` and flips of the
        batch, as host lists: the pipeline's when every sample has them,
        else drawn here."""
        metas = [getattr(ds, 'metainfo', {}) for ds in data_samples or []]
        if metas and all('crop_box' in m for m in metas):
            boxes = [[int(v) for v in m['crop_box']] for m in metas]
            for img, box, name in zip(images, boxes, names):
                if img is not None and (box[0] + box[2] > img.shape[1]
                                        or box[1] + box[3] > img.shape[2]):
                    raise ValueError(
                        f'GPUDecodeDataPreprocessor: crop_box {box} lies '
                        f'outside the decoded {tuple(img.shape[1:])} image '
                        f'{name}')
            return boxes, [bool(m.get('flip', False)) for m in metas]
        shapes = [(1, 1) if img is None else tuple(img.shape[1:])
                  for img in images]
        boxes = sample_crop_boxes(
            [h for h, _ in shapes], [w for _, w in shapes], self.scale,
            self.ratio,
            lambda shape: torch.rand(shape, dtype=torch.float64).numpy())
        flips = torch.rand(len(images)) < self.flip_prob
        return boxes.tolist(), flips.tolist()

    def _decode(
        self, inputs: List[torch.Tensor], names: List[str]
    ) -> Tuple[List[Optional[torch.Tensor]], Dict[int, str]]:
        """Decode every image to a ``(3, H, W)`` uint8 tensor on the
        device (JPEGs in one batched call); None for an undecodable one,
        whose decoders' errors are returned by batch position."""
        byte_tensors = []
        for data, name in zip(inputs, names):
            if not (isinstance(data, torch.Tensor)
                    and data.dtype == torch.uint8 and data.dim() == 1):
                raise TypeError(
                    f'GPUDecodeDataPreprocessor: {name}: expected the encoded '
                    f'bytes as a 1-D uint8 tensor (use LoadImageBytes in the '
                    f'pipeline), got {type(data).__name__} '
                    f'{getattr(data, "shape", "")}')
            byte_tensors.append(data.cpu().contiguous())
        is_jpeg = [
            bytes(t[:3].tolist()) == _JPEG_MAGIC for t in byte_tensors
        ]
        images: List[Optional[torch.Tensor]] = [None] * len(byte_tensors)
        jpeg_ids = [i for i, flag in enumerate(is_jpeg) if flag]
        if jpeg_ids:
            try:
                decoded = decode_jpeg([byte_tensors[i] for i in jpeg_ids],
                                      mode=ImageReadMode.RGB,
                                      device=self.device)
            except RuntimeError:  # find the bad file(s)
                decoded = [
                    self._decode_one(byte_tensors[i], names[i])
                    for i in jpeg_ids
                ]
            for i, img in zip(jpeg_ids, decoded):
                images[i] = img
        for i, flag in enumerate(is_jpeg):
            if not flag:
                images[i] = self._decode_one(byte_tensors[i], names[i])
        errors = {i: img for i, img in enumerate(images)
                  if isinstance(img, str)}
        for i in errors:
            images[i] = None
        return images, errors

    def _decode_one(self, data: torch.Tensor,
                    name: str) -> Union[torch.Tensor, str]:
        """Decode one image, trying nvjpeg/libjpeg, torchvision's CPU
        decoders, then PIL; if all fail, their errors (a string)."""
        errors = []
        if bytes(data[:3].tolist()) == _JPEG_MAGIC:
            try:
                return decode_jpeg(
                    data, mode=ImageReadMode.RGB, device=self.device)
            except RuntimeError as err:
                errors.append(f'decode_jpeg: {err}')
        try:
            img = decode_image(data, mode=ImageReadMode.RGB)
        except RuntimeError as err:
            errors.append(f'decode_image: {err}')
            try:
                with Image.open(io.BytesIO(data.numpy().tobytes())) as pil:
                    array = np.asarray(pil.convert('RGB'))
                img = torch.from_numpy(array.copy()).permute(2, 0, 1)
            except Exception as pil_err:  # PIL raises several error types
                errors.append(f'PIL: {pil_err}')
                return '; '.join(errors)
        return img.to(self.device, non_blocking=self._non_blocking)
