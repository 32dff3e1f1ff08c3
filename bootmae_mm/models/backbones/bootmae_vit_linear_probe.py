from mmpretrain.registry import MODELS

from ...config_errors import ConfigValueError
from .bootmae_vit import BootMAEViT


@MODELS.register_module()
class BootMAEViTLinearProbe(BootMAEViT):
    """The first ``depth`` blocks of a BootMAE encoder, frozen, for linear
    probing (docs/method.md section 8: the intermediate layer probes better
    than the last).

    Only ``depth`` blocks are built, so the later blocks are neither computed
    nor kept; a full checkpoint loads with those blocks reported unused.
    Everything is frozen (``requires_grad=False``) and stays in eval mode in
    training; the output is the mean of the patch tokens through a
    LayerNorm (``ln2``, frozen at its identity init, as only the head
    trains), with no final norm.

    Args:
        arch (str | dict): the full encoder's arch, as for ``BootMAEViT``.
            Defaults to 'b'.
        depth (int): how many blocks to build and run (10 for ViT-B, 18 for
            ViT-L). Defaults to 10.
        **kwargs: other ``BootMAEViT`` arguments (``img_size``,
            ``patch_size``, ``init_cfg`` ...).
    """

    def __init__(self, arch='b', depth: int = 10, **kwargs):
        if isinstance(arch, str):
            if arch.lower() not in self.arch_zoo:
                raise ConfigValueError(
                    'arch', arch, f'arch="{arch}" is not a known ViT arch.')
            arch = self.arch_zoo[arch.lower()]
        arch = dict(arch)
        if not 1 <= depth <= arch.get('num_layers', depth):
            raise ValueError(f'depth={depth} must be in 1 .. the arch\'s '
                             f'{arch["num_layers"]} blocks.')
        arch['num_layers'] = depth
        for key in ('final_norm', 'out_type', 'frozen_stages'):
            if key in kwargs:
                raise ValueError(f'BootMAEViTLinearProbe sets {key} itself.')
        super().__init__(arch=arch, final_norm=False, out_type='avg_featmap',
                         frozen_stages=depth, **kwargs)

    def train(self, mode: bool = True):
        super().train(mode)
        self._freeze_stages()  # frozen modules back to eval mode
        return self
