from typing import Sequence

import torch
from mmengine.logging import MMLogger
from mmengine.registry import WEIGHT_INITIALIZERS
from mmpretrain.models.backbones import BEiTViT
from mmseg.registry import MODELS

from ..interop.checkpoint_loading import load_encoder_state_dict
from ..models.utils import sincos_pos_embed
from .checkpoint_adapter import load_encoder_checkpoint

# filled at load time from the encoder's own grid; never taken as "missing"
_REBUILT_KEYS = ('relative_position_bias_table', 'relative_position_index')
# layer scales: not in pretraining checkpoints (start at their init value),
# in the segmentation checkpoints of ours (loaded)
_LAYER_SCALE_KEYS = ('gamma_1', 'gamma_2')


@MODELS.register_module()
class BootMAEViTSeg(BEiTViT):
    """The BootMAE encoder as a dense-prediction backbone (docs/method.md
    section 8): mmpretrain's ``BEiTViT`` with, as the reference's
    segmentation backbone, a **trainable** absolute position embedding
    (initialized from the checkpoint's sin-cos table, resized bicubically
    to this grid), a relative position bias in every block
    (zero-initialized, pretraining has none), q/v biases, learnable layer
    scales on both residual branches of every block (``gamma_1`` /
    ``gamma_2``, initialized to 1.0; not in pretraining checkpoints), and
    ``(B, C, H/16, W/16)`` feature maps from ``out_indices``.

    Its parameter names (``layers.N.*``) are those mmseg's
    ``LearningRateDecayOptimizerConstructor`` parses for ViT/BEiT/MAE
    backbones: the layer scales take their block's lr and no weight decay
    (1-D), the position embedding the patch embedding's lr and, as in the
    reference, the weight decay.

    ``init_cfg=dict(type='BootMAEPretrained', checkpoint=PATH_OR_URL)``
    loads a BootMAE pretraining checkpoint (online encoder;
    ``source='target'`` in the init_cfg takes the momentum target), an
    mmpretrain / mmseg checkpoint of this encoder, or a reference checkpoint
    (see ``bootmae_mm.interop.checkpoint_loading``), after the rest of the
    initialization. The absolute position embedding and the
    relative position tables are resized when the grid differs. A
    checkpoint of another architecture is refused with the mismatched keys
    and shapes listed.

    Args:
        arch (str | dict): ViT arch ('b', 'l' or a dict with embed_dims,
            num_layers, num_heads, feedforward_channels). Defaults to 'b'.
        img_size (int | tuple): training crop size. Defaults to 512.
        patch_size (int): Defaults to 16.
        out_indices (Sequence[int]): blocks whose outputs are returned
            (0-based). Defaults to (3, 5, 7, 11).
        drop_path_rate (float): stochastic depth. Defaults to 0.1.
        layer_scale_init_value (float): initial value of the learnable
            layer scales (reference ``init_values=1``); 0 for none.
            Defaults to 1.0.
        norm_cfg (dict): Defaults to ``dict(type='LN', eps=1e-6)``.
        init_cfg (dict, optional): ``dict(type='BootMAEPretrained',
            checkpoint=PATH, source='online')`` or None.
        **kwargs: other ``BEiTViT`` arguments (``frozen_stages``,
            ``drop_rate``, ``interpolate_mode`` ...).
    """

    def __init__(self,
                 arch='b',
                 img_size=512,
                 patch_size: int = 16,
                 out_indices: Sequence[int] = (3, 5, 7, 11),
                 drop_path_rate: float = 0.1,
                 layer_scale_init_value: float = 1.,
                 norm_cfg: dict = dict(type='LN', eps=1e-6),
                 init_cfg=None,
                 **kwargs):
        super().__init__(
            arch=arch,
            img_size=img_size,
            patch_size=patch_size,
            out_indices=list(out_indices),
            drop_path_rate=drop_path_rate,
            bias='qv_bias',
            norm_cfg=norm_cfg,
            final_norm=False,
            out_type='featmap',
            with_cls_token=True,
            use_abs_pos_emb=True,
            use_rel_pos_bias=True,
            use_shared_rel_pos_bias=False,
            layer_scale_init_value=layer_scale_init_value,
            init_cfg=init_cfg,
            **kwargs)
        bad = [i for i in self.out_indices if not 0 <= i < self.num_layers]
        if bad:
            raise ValueError(f'out_indices {bad} are outside the '
                             f'{self.num_layers} blocks of the encoder.')
        self.layer_scale_init_value = layer_scale_init_value
        self.img_size = tuple(self.patch_embed.init_input_size)

    def forward(self, x: torch.Tensor):
        # the relative position tables hold one grid: other input sizes
        # would fail deep inside the attention with a bare shape error
        if tuple(x.shape[-2:]) != self.img_size:
            raise ValueError(
                f'BootMAEViTSeg takes {self.img_size[0]} x {self.img_size[1]} '
                f'inputs (model.backbone.img_size: its relative position '
                f'tables are made for that grid), got {x.shape[-2]} x '
                f'{x.shape[-1]}. Test with slide inference whose '
                'model.test_cfg.crop_size is img_size, and pad smaller '
                'images up to it with model.data_preprocessor.test_cfg='
                'dict(size=img_size).')
        return super().forward(x)

    def init_weights(self) -> None:
        pretrained = self.init_cfg if isinstance(self.init_cfg, dict) and \
            self.init_cfg.get('type') == 'BootMAEPretrained' else None
        self.init_cfg = None if pretrained else self.init_cfg
        super().init_weights()
        self.init_cfg = pretrained or self.init_cfg
        with torch.no_grad():
            # from scratch: the sin-cos table and layer scales at their
            # init value (a checkpoint below replaces what it holds)
            self.pos_embed.copy_(
                sincos_pos_embed(self.patch_resolution, self.embed_dims))
            for layer in self.layers:
                layer.attn.relative_position_bias_table.zero_()
                for gamma in (layer.gamma_1, layer.gamma_2):
                    if gamma is not None:
                        gamma.fill_(self.layer_scale_init_value)
        if pretrained:  # calls self.load_pretrained
            WEIGHT_INITIALIZERS.build(pretrained).load(self)

    def load_pretrained(self, filename: str, source: str = 'online'):
        """Load encoder weights from ``filename`` (any supported format;
        ``source``: 'online' or 'target' encoder of a BootMAE checkpoint).
        Every weight but the relative position tables and the layer
        scales must be in it.

        Raises:
            ValueError: no weight matched, or the checkpoint's architecture
                differs (shape mismatches / missing keys, all listed).
        """
        state_dict, origin = load_encoder_checkpoint(filename, source)
        state_dict = {k: v for k, v in state_dict.items()
                      if not k.endswith('relative_position_index')}
        # BEiTViT's pre-hooks resize pos_embed and relative position tables
        report = load_encoder_state_dict(
            self, state_dict, f'{filename} ({origin})',
            resizable=self._resizable,
            required=lambda key: not key.endswith(
                _REBUILT_KEYS + _LAYER_SCALE_KEYS))
        fresh = [k for k in report['missing']
                 if k.endswith('relative_position_bias_table')]
        scales = [k for k in report['missing']
                  if k.endswith(_LAYER_SCALE_KEYS)]
        MMLogger.get_current_instance().info(
            f'{len(fresh)} relative position bias tables kept at zero, '
            f'{len(scales)} layer scales at {self.layer_scale_init_value}.')

    @staticmethod
    def _resizable(key: str, src: torch.Size, dst: torch.Size) -> bool:
        """Whether the load pre-hooks resize ``key`` to this model's grid
        (same width / heads, another number of positions)."""
        return (key == 'pos_embed' or key.endswith(
            'relative_position_bias_table')) and src[-1] == dst[-1]
