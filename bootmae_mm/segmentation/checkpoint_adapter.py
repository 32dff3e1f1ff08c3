"""BootMAE checkpoint -> weights of the segmentation backbone.

``bootmae_mm.interop.checkpoint_loading`` reads any supported checkpoint
(ours, online or momentum target; mmpretrain/mmseg ones with ``backbone.*``;
the reference pretraining and fine-tuning ones) as encoder weights named
like mmpretrain's ``VisionTransformer``. The segmentation backbone
(``BootMAEViTSeg``, an mmpretrain ``BEiTViT``) differs in one place: its
attention has ``q_bias`` and ``v_bias`` instead of one ``qkv.bias``.
"""
from typing import Dict, Tuple

import torch

from ..interop.checkpoint_loading import encoder_state_dict


def vit_to_beit(state_dict: Dict[str, torch.Tensor]
                ) -> Dict[str, torch.Tensor]:
    """Rename ``VisionTransformer`` encoder weights for ``BEiTViT`` (qv
    bias): ``attn.qkv.bias`` (3C) becomes ``attn.q_bias`` and
    ``attn.v_bias``; the k bias is dropped, which changes no output (it
    adds the same value to every logit of a query). Keys already in
    ``BEiTViT`` form (a segmentor checkpoint) pass through."""
    out = {}
    for key, value in state_dict.items():
        if key.endswith('.attn.qkv.bias'):
            q, _, v = value.chunk(3)
            out[key.replace('qkv.bias', 'q_bias')] = q
            out[key.replace('qkv.bias', 'v_bias')] = v
        else:
            out[key] = value
    return out


def load_encoder_checkpoint(filename: str, source: str = 'online'
                            ) -> Tuple[Dict[str, torch.Tensor], str]:
    """The encoder weights of ``filename`` with ``BEiTViT`` names and a
    word on what was read.

    Args:
        filename (str): the checkpoint file.
        source (str): 'online' (default) or 'target' (the momentum target
            of a BootMAE pretraining checkpoint).
    """
    state_dict, what = encoder_state_dict(str(filename), source)
    return vit_to_beit(state_dict), what
