"""Write the encoder of a BootMAE checkpoint as a timm ViT state dict
(``vit_base_patch16_224``-style names).

    python tools/model_converters/bootmae_to_timm.py SRC DST \
        [--source online|target] [--model-name NAME] [--num-heads N]

SRC: as for ``bootmae_to_vit.py`` (ours, pretraining or fine-tuned, or a
reference checkpoint). DST is a plain state dict for
``timm.create_model(NAME, pretrained=False, **kwargs)``: ``patch_embed.proj``,
``cls_token``, ``pos_embed``, ``blocks.i.{norm1, attn.qkv, attn.proj, norm2,
mlp.fc1, mlp.fc2}``, ``norm`` (final norm, pretraining encoders) or
``fc_norm`` (norm of the mean-pooled tokens, fine-tuned encoders) and
``head`` (fine-tuned classifiers). The printed line gives the
``create_model`` arguments it fits.

The architecture (heads, depth, width, patch size) is the one SRC records
(its saved config ``meta['cfg']``, or a reference checkpoint's
``args.model``); a checkpoint that records no head count needs
``--num-heads``. Before saving, the state dict is loaded strictly into the
timm model and its ``forward_features`` (and pooled features) on random
input are compared with our model built from SRC's recorded architecture
and loaded from SRC (max abs difference <= --atol).
"""
import argparse
import os
import os.path as osp
import re
import sys

import torch

import bootmae_mm  # noqa: F401  (registers our modules, applies shims)
from bootmae_mm.interop.checkpoint_loading import SOURCES
from bootmae_mm.interop.export import load_export_source

# mmpretrain VisionTransformer name -> timm VisionTransformer name
_TOP = {
    'cls_token': 'cls_token',
    'pos_embed': 'pos_embed',
    'patch_embed.projection.weight': 'patch_embed.proj.weight',
    'patch_embed.projection.bias': 'patch_embed.proj.bias',
    'ln1.weight': 'norm.weight',
    'ln1.bias': 'norm.bias',
    'ln2.weight': 'fc_norm.weight',
    'ln2.bias': 'fc_norm.bias',
}
_BLOCK = {
    'ln1': 'norm1',
    'attn.qkv': 'attn.qkv',
    'attn.proj': 'attn.proj',
    'ln2': 'norm2',
    'ffn.layers.0.0': 'mlp.fc1',
    'ffn.layers.1': 'mlp.fc2',
}
# embed_dims -> timm model name
_NAMES = {192: 'vit_tiny_patch16_224', 384: 'vit_small_patch16_224',
          768: 'vit_base_patch16_224', 1024: 'vit_large_patch16_224',
          1280: 'vit_huge_patch14_224'}


def to_timm(state):
    """mmpretrain ``VisionTransformer`` encoder state dict (+ optional
    ``head.fc.*``) -> timm names. Unknown keys are an error."""
    out, unknown = {}, []
    for k, v in state.items():
        m = re.match(r'^layers\.(\d+)\.(.+)\.(weight|bias)$', k)
        if k in _TOP:
            out[_TOP[k]] = v
        elif m and m.group(2) in _BLOCK:
            out[f'blocks.{m.group(1)}.{_BLOCK[m.group(2)]}.{m.group(3)}'] = v
        elif k.startswith('head.fc.'):
            out['head.' + k[len('head.fc.'):]] = v
        else:
            unknown.append(k)
    if unknown:
        raise KeyError(f'no timm name for {unknown}')
    return {k: v.contiguous() for k, v in out.items()}


def timm_kwargs(vit_kwargs, num_classes=0):
    """``timm.create_model`` keyword arguments for an encoder built with
    ``vit_kwargs`` (see ``bootmae_mm.interop.export.vit_kwargs_of``)."""
    arch = vit_kwargs['arch']
    pooled = vit_kwargs['out_type'] == 'avg_featmap'
    if pooled and vit_kwargs['final_norm']:
        raise ValueError('an encoder with both a final norm and a norm of '
                         'the pooled tokens has no timm equivalent.')
    return dict(
        img_size=vit_kwargs['img_size'],
        patch_size=vit_kwargs['patch_size'],
        embed_dim=arch['embed_dims'],
        depth=arch['num_layers'],
        num_heads=arch['num_heads'],
        mlp_ratio=arch['feedforward_channels'] / arch['embed_dims'],
        qkv_bias=True,
        num_classes=num_classes,
        global_pool='avg' if pooled else 'token',
        fc_norm=pooled,
        # timm's final_norm switches both `norm` and `fc_norm`
        final_norm=vit_kwargs['final_norm'] or pooled)


def build(src, source='online', model_name=None, num_heads=None):
    """(ours, timm_model, timm_state, create_model kwargs, name): our
    encoder built from the architecture ``src`` records and loaded from it,
    and the timm model loaded strictly with the exported weights."""
    import timm
    ours, state, head, vit_kwargs, origin = load_export_source(
        src, source, num_heads)
    print(f'{src}: architecture from {origin}: {vit_kwargs}')
    state = dict(state, **{k: v for k, v in head.items()
                           if k.startswith('head.fc.')})
    num_classes = state['head.fc.weight'].shape[0] \
        if 'head.fc.weight' in state else 0
    kwargs = timm_kwargs(vit_kwargs, num_classes)
    name = model_name or _NAMES.get(vit_kwargs['arch']['embed_dims'],
                                    'vit_base_patch16_224')
    model = timm.create_model(name, pretrained=False, **kwargs)
    timm_state = to_timm(state)
    model.load_state_dict(timm_state, strict=True)
    model.eval()
    return ours, model, timm_state, kwargs, name


@torch.no_grad()
def max_difference(ours, model, kwargs, batch=2, seed=0):
    """Largest difference of the token features and, for pooled encoders,
    of the pooled (fc_norm) features."""
    g = torch.Generator().manual_seed(seed)
    size = kwargs['img_size']
    size = (size, size) if isinstance(size, int) else tuple(size)
    x = torch.randn(batch, 3, *size, generator=g)
    tokens = ours.encode(x)[0]  # all tokens, after the final norm if any
    theirs = model.forward_features(x)
    diff = (tokens - theirs).abs().max().item()
    if kwargs['global_pool'] == 'avg':
        pooled = ours(x)[0]  # out_type='avg_featmap': ln2(mean of patches)
        diff = max(diff, (pooled - model.forward_head(
            theirs, pre_logits=True)).abs().max().item())
    return diff


def convert(src, dst, source='online', model_name=None, num_heads=None,
            atol=1e-5):
    """Convert, verify and save; returns (max difference, name, kwargs)."""
    ours, model, state, kwargs, name = build(src, source, model_name,
                                             num_heads)
    diff = max_difference(ours, model, kwargs)
    if not diff <= atol:
        raise RuntimeError(f'the timm model differs from ours by '
                           f'{diff:.3g} > {atol}; not saved.')
    os.makedirs(osp.dirname(osp.abspath(dst)), exist_ok=True)
    torch.save(state, dst)
    return diff, name, kwargs


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('src', help='BootMAE checkpoint')
    parser.add_argument('dst', help='output timm state dict')
    parser.add_argument('--source', choices=list(SOURCES), default='online',
                        help='online encoder (default) or momentum target')
    parser.add_argument('--model-name', default=None,
                        help='timm model name (default: from the width)')
    parser.add_argument('--num-heads', type=int, default=None,
                        help='attention heads, for a checkpoint that '
                        "records none (no meta['cfg'], no reference args)")
    parser.add_argument('--atol', type=float, default=1e-5,
                        help='largest output difference accepted')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        diff, name, kwargs = convert(args.src, args.dst, args.source,
                                     args.model_name, args.num_heads,
                                     args.atol)
    except (ValueError, KeyError) as e:
        raise SystemExit(f'bootmae_to_timm: {e}')
    print(f'{args.dst}: timm.create_model({name!r}, pretrained=False, '
          f'**{kwargs}); outputs match ours (max abs difference '
          f'{diff:.3g}).')
    return 0


if __name__ == '__main__':
    sys.exit(main())
