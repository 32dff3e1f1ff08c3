"""The reference's initialization of a BootMAE pretraining model from
scratch (docs/method.md section 2b), shared by the encoder and the two
decoders: xavier-uniform Linear weights (a fused q/k/v projection per
part), zero biases, LayerNorm 1 / 0."""
import math

import torch
import torch.nn as nn

#: the name of a fused q/k/v projection (``Linear(D, 3 * inner)``) in the
#: encoder (mmpretrain's attention) and in the decoders' self-attention
FUSED_QKV_NAME = 'qkv'


@torch.no_grad()
def xavier_uniform_parts_(weight: torch.Tensor, parts: int = 1
                          ) -> torch.Tensor:
    """Xavier-uniform init of a Linear weight (out, in) seen as ``parts``
    stacked (out / parts, in) weights: uniform in
    +-sqrt(6 / (out / parts + in)). ``parts=1`` is plain xavier-uniform;
    ``parts=3`` is a fused q/k/v projection whose parts are initialized as
    if they were three Linear layers."""
    fan_out, fan_in = weight.shape[0], weight[0].numel()
    if fan_out % parts:
        raise ValueError(f'a weight with {fan_out} rows does not split into '
                         f'{parts} parts.')
    bound = math.sqrt(6. / (fan_out // parts + fan_in))
    return weight.uniform_(-bound, bound)


@torch.no_grad()
def init_transformer_weights_(module: nn.Module) -> None:
    """Every ``nn.Linear`` under ``module``: xavier-uniform weight (per
    q / k / v part for a Linear named ``qkv``), zero bias; every
    ``nn.LayerNorm``: weight 1, bias 0. Other layers are left alone."""
    for name, m in module.named_modules():
        if isinstance(m, nn.Linear):
            fused = name.rsplit('.', 1)[-1] == FUSED_QKV_NAME
            xavier_uniform_parts_(m.weight, 3 if fused else 1)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            if m.weight is not None:
                nn.init.ones_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
