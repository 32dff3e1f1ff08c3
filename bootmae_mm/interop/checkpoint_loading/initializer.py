"""The ``BootMAEPretrained`` weight initializer: an encoder from any
checkpoint we read, set in a config's ``init_cfg``."""
from typing import Optional

import torch
from mmengine.model.weight_init import update_init_info
from mmengine.registry import WEIGHT_INITIALIZERS

from .loading import load_bootmae_encoder
from .reading import SOURCES


@WEIGHT_INITIALIZERS.register_module(name='BootMAEPretrained')
class BootMAEPretrainedInit:
    """Initialize a backbone with the encoder of a BootMAE checkpoint
    (see :func:`load_bootmae_encoder` for the accepted checkpoints).

    Unlike mmengine's ``Pretrained``, which ``BaseModule.init_weights``
    applies last, a custom initializer runs *before* the sub-modules'
    own initialization and the module's code after ``super().init_weights()``
    (e.g. ``VisionTransformer`` re-drawing ``pos_embed`` unless its
    ``init_cfg`` is of type ``'Pretrained'``). So this initializer first runs
    the sub-modules' default initialization, loads the weights, and then
    marks ``module.init_cfg`` as ``type='Pretrained'``, so that nothing
    overwrites the loaded weights afterwards. A backbone that sets up its
    own weights after ``super().init_weights()`` (the segmentation backbone)
    calls :meth:`load` itself, last.

    Args:
        checkpoint (str): the checkpoint, a path or an ``http(s)://`` URL
            (downloaded once into torch's hub cache). Must be set, e.g. with
            ``--cfg-options model.backbone.init_cfg.checkpoint=PATH``.
        source (str): 'online' (default): the trained encoder; 'target': the
            momentum target encoder of a BootMAE pretraining checkpoint.
        prefix (str, optional): read the keys under this prefix instead of
            the one ``source`` implies.
    """

    def __init__(self, checkpoint: Optional[str] = None,
                 source: str = 'online', prefix: Optional[str] = None):
        if source not in SOURCES:
            raise ValueError(f"init_cfg source='{source}' is not one of "
                             f'{list(SOURCES)}.')
        self.checkpoint = checkpoint
        self.source = source
        self.prefix = prefix

    def check_checkpoint(self) -> str:
        """The checkpoint, or a ValueError naming the config key."""
        if not self.checkpoint:
            raise ValueError(
                'model.backbone.init_cfg.checkpoint is not set: give the '
                'BootMAE checkpoint with --cfg-options model.backbone.'
                'init_cfg.checkpoint=PATH (or set model.backbone.'
                'init_cfg=None to train from scratch).')
        return str(self.checkpoint)

    def load(self, module: torch.nn.Module) -> dict:
        """Load the encoder into ``module``: through its own
        ``load_pretrained(checkpoint, source)`` when it has one (a backbone
        whose parameters are named otherwise), else with
        :func:`load_bootmae_encoder`."""
        checkpoint = self.check_checkpoint()
        if hasattr(module, 'load_pretrained') and self.prefix is None:
            return module.load_pretrained(checkpoint, self.source)
        return load_bootmae_encoder(module, checkpoint, self.source,
                                    self.prefix)

    def __call__(self, module: torch.nn.Module) -> None:
        checkpoint = self.check_checkpoint()
        for child in module.children():
            if hasattr(child, 'init_weights') and not getattr(
                    child, 'is_init', False):
                child.init_weights()
        self.load(module)
        if getattr(module, 'init_cfg', None) is not None:
            module.init_cfg = dict(type='Pretrained', checkpoint=checkpoint)
        if hasattr(module, '_params_init_info'):
            update_init_info(module, init_info=self._get_init_info())

    def _get_init_info(self) -> str:
        return (f'{self.__class__.__name__}: {self.source} encoder of '
                f'{self.checkpoint}')
