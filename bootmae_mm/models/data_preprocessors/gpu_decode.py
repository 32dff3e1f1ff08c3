"""Decode JPEG bytes and apply the pretraining crop/flip on the model's
device."""
import io
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from mmpretrain.models.utils.data_preprocessor import SelfSupDataPreprocessor
from mmpretrain.registry import MODELS
from PIL import Image
from torchvision.io import ImageReadMode, decode_image, decode_jpeg
from torchvision.transforms import InterpolationMode, RandomResizedCrop
from torchvision.transforms.v2 import functional as F

_JPEG_MAGIC = b'\xff\xd8\xff'


@MODELS.register_module()
class GPUDecodeDataPreprocessor(SelfSupDataPreprocessor):
    """Decode, randomly crop, flip and normalize a batch of encoded images.

    For when CPU decoding in the data loader cannot keep up with the training
    step: the pipeline only reads bytes
    (:class:`~bootmae_mm.datasets.transforms.LoadImageBytes`, then e.g. the
    mask generator and ``PackInputs``) and the data loader must use
    ``pseudo_collate``. This preprocessor then, on the model's device:

    1. decodes all JPEGs of the batch in one
       ``torchvision.io.decode_jpeg(list, device=...)`` call (nvjpeg on
       CUDA, libjpeg-turbo on CPU); other formats (PNG, WebP, GIF, then
       anything PIL reads) are decoded on the CPU and moved to the device;
    2. per image, samples a crop exactly as torchvision's
       ``RandomResizedCrop.get_params`` (10 tries, then a central crop) and
       resizes it to ``size`` (bicubic, antialiased, uint8 result as in the
       CPU pipeline), then flips it horizontally with probability
       ``flip_prob``;
    3. stacks to ``(B, 3, H, W)``, converts to float and normalizes with
       ``mean``/``std`` (RGB order, 0-255 scale).

    ``data_samples`` (masks included) are moved to the device, otherwise
    unchanged. The augmentation is applied whether or not ``training`` is
    set, like the CPU pipeline it replaces. Note: torchvision 0.29 marks its
    image decoders deprecated in favour of TorchCodec; they still work.

    Args:
        size (int | Sequence[int]): Output size, ``int`` or ``(H, W)``.
            Defaults to 224.
        scale (Sequence[float]): Range of the crop's area relative to the
            image. Defaults to (0.2, 1.0).
        ratio (Sequence[float]): Range of the crop's aspect ratio (w / h).
            Defaults to (3 / 4, 4 / 3).
        interpolation (str): Resize interpolation, a
            ``torchvision.transforms.InterpolationMode`` value.
            Defaults to 'bicubic'.
        antialias (bool): Antialias when downscaling. Defaults to True.
        flip_prob (float): Probability of a horizontal flip.
            Defaults to 0.5.
        mean (Sequence[float], optional): RGB pixel mean (0-255 scale).
            Defaults to (127.5, 127.5, 127.5), BootMAE's 0.5 on [0, 1].
            With ``mean=None`` and ``std=None`` the output is not
            normalized (float 0-255).
        std (Sequence[float], optional): RGB pixel std (0-255 scale).
            Defaults to (127.5, 127.5, 127.5).
        non_blocking (bool): Copy data samples / non-JPEG images to the
            device without blocking. Defaults to False.
    """

    def __init__(self,
                 size: Union[int, Sequence[int]] = 224,
                 scale: Sequence[float] = (0.2, 1.0),
                 ratio: Sequence[float] = (3 / 4, 4 / 3),
                 interpolation: str = 'bicubic',
                 antialias: bool = True,
                 flip_prob: float = 0.5,
                 mean: Optional[Sequence[float]] = (127.5, 127.5, 127.5),
                 std: Optional[Sequence[float]] = (127.5, 127.5, 127.5),
                 non_blocking: bool = False):
        super().__init__(mean=mean, std=std, non_blocking=non_blocking)
        self.size = [size, size] if isinstance(size, int) else list(size)
        if len(self.size) != 2:
            raise ValueError(f'GPUDecodeDataPreprocessor: `size` must be an '
                             f'int or (H, W), got {size}')
        if not (0 < scale[0] <= scale[1]):
            raise ValueError(f'GPUDecodeDataPreprocessor: `scale` must be '
                             f'(min, max) with 0 < min <= max, got {scale}')
        if not (0 < ratio[0] <= ratio[1]):
            raise ValueError(f'GPUDecodeDataPreprocessor: `ratio` must be '
                             f'(min, max) with 0 < min <= max, got {ratio}')
        if not 0 <= flip_prob <= 1:
            raise ValueError(f'GPUDecodeDataPreprocessor: `flip_prob` must '
                             f'be in [0, 1], got {flip_prob}')
        self.scale = [float(s) for s in scale]
        self.ratio = [float(r) for r in ratio]
        self.interpolation = InterpolationMode(interpolation)
        self.antialias = antialias
        self.flip_prob = flip_prob

    def forward(self, data: dict, training: bool = False) -> dict:
        """Decode and augment ``data['inputs']`` (list of 1-D uint8 CPU
        tensors of encoded bytes); return ``inputs`` ``(B, 3, H, W)`` float
        and ``data_samples``."""
        if not isinstance(data, dict) or 'inputs' not in data:
            raise TypeError('GPUDecodeDataPreprocessor expects a dict with '
                            '"inputs" (use pseudo_collate in the data loader)')
        inputs = data['inputs']
        if isinstance(inputs, torch.Tensor):  # default_collate, equal lengths
            inputs = list(inputs.reshape(-1, inputs.shape[-1]).unbind(0))
        data_samples = data.get('data_samples')
        names = self._names(data_samples, len(inputs))
        images = self._decode(inputs, names)
        batch = torch.stack([self._crop_flip(img) for img in images])
        batch = batch.float()
        if self._enable_normalize:
            batch = (batch - self.mean) / self.std
        if data_samples is not None:
            data_samples = self.cast_data(data_samples)
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

    def _decode(self, inputs: List[torch.Tensor],
                names: List[str]) -> List[torch.Tensor]:
        """Decode every image to a ``(3, H, W)`` uint8 tensor on the
        device; JPEGs in one batched call."""
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
            except RuntimeError:  # find and name the bad file
                decoded = [
                    self._decode_one(byte_tensors[i], names[i])
                    for i in jpeg_ids
                ]
            for i, img in zip(jpeg_ids, decoded):
                images[i] = img
        for i, flag in enumerate(is_jpeg):
            if not flag:
                images[i] = self._decode_one(byte_tensors[i], names[i])
        return images

    def _decode_one(self, data: torch.Tensor, name: str) -> torch.Tensor:
        """Decode one image, trying nvjpeg/libjpeg, torchvision's CPU
        decoders, then PIL; raise naming the file if all fail."""
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
                raise ValueError(
                    f'GPUDecodeDataPreprocessor: cannot decode image {name}: '
                    + '; '.join(errors)) from pil_err
        return img.to(self.device, non_blocking=self._non_blocking)

    def _crop_params(self, img: torch.Tensor) -> Tuple[int, int, int, int]:
        """(top, left, height, width), torchvision's RandomResizedCrop
        sampling (host-side RNG, no device synchronisation)."""
        return RandomResizedCrop.get_params(img, self.scale, self.ratio)

    def _crop_flip(self, img: torch.Tensor) -> torch.Tensor:
        top, left, height, width = self._crop_params(img)
        out = F.resized_crop(
            img,
            top,
            left,
            height,
            width,
            self.size,
            interpolation=self.interpolation,
            antialias=self.antialias)
        if self.flip_prob > 0 and torch.rand(1).item() < self.flip_prob:
            out = F.horizontal_flip(out)
        return out
