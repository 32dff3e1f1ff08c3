"""Write the encoder of a BootMAE checkpoint as a plain mmpretrain
``VisionTransformer`` checkpoint.

    python tools/model_converters/bootmae_to_vit.py SRC DST \
        [--source online|target] [--num-heads N]

SRC: a checkpoint of our pretraining (the online encoder ``backbone.*``, or
with ``--source target`` the momentum target ``target_encoder.*``), of our
fine-tuning (``backbone.*`` and the ``head.*`` of the classifier), or a
reference BootMAE pretraining / fine-tuning checkpoint. DST holds
``{'state_dict': {'backbone.*', ['head.*']}, 'meta': {...}}``, as mmpretrain
classifiers are saved; ``meta['vit_kwargs']`` records the
``VisionTransformer`` arguments it fits. mmpretrain's own
``init_cfg=dict(type='Pretrained', checkpoint=DST, prefix='backbone.')``
loads it.

The architecture (heads, depth, width, patch size) is the one SRC records:
its saved config (``meta['cfg']``, written by every mmengine run) or, for a
reference checkpoint, its ``args.model``. A checkpoint that records no head
count needs ``--num-heads`` (head counts are not in the weights); nothing is
guessed. Before saving, the encoder is loaded strictly into a stock
mmpretrain ``VisionTransformer`` and its output on random input is compared
with that of our model built from SRC's recorded architecture and loaded
from SRC (max abs difference <= --atol).
"""
import argparse
import os
import os.path as osp
import sys

import torch

import bootmae_mm  # noqa: F401  (registers our modules, applies shims)
from bootmae_mm.interop.checkpoint_loading import SOURCES
from bootmae_mm.interop.export import load_export_source


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('src', help='BootMAE checkpoint')
    parser.add_argument('dst', help='output checkpoint')
    parser.add_argument('--source', choices=list(SOURCES), default='online',
                        help='online encoder (default) or momentum target')
    parser.add_argument('--num-heads', type=int, default=None,
                        help='attention heads, for a checkpoint that '
                        "records none (no meta['cfg'], no reference args)")
    parser.add_argument('--atol', type=float, default=1e-5,
                        help='largest output difference accepted')
    return parser.parse_args(argv)


def build_encoders(src, source, num_heads=None):
    """(ours, stock, state, kwargs, head): our encoder built from the
    architecture ``src`` records and loaded from it, a stock
    ``VisionTransformer`` of the same arch loaded strictly with the
    exported weights, and a fine-tuned classifier's ``head.*``."""
    from mmpretrain.models import VisionTransformer
    ours, state, head, kwargs, origin = load_export_source(src, source,
                                                           num_heads)
    print(f'{src}: architecture from {origin}: {kwargs}')
    stock = VisionTransformer(**kwargs)
    stock.load_state_dict(state, strict=True)
    stock.eval()  # (mmpretrain backbones' train() returns None)
    return ours, stock, state, kwargs, head


def _pair(size):
    return (size, size) if isinstance(size, int) else tuple(size)


@torch.no_grad()
def max_difference(a, b, kwargs, batch=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 3, *_pair(kwargs['img_size']), generator=g)
    return max((oa - ob).abs().max().item()
               for oa, ob in zip(a(x), b(x)))


def convert(src, dst, source='online', num_heads=None, atol=1e-5):
    """Convert, verify and save; returns the max output difference."""
    ours, stock, state, kwargs, head = build_encoders(src, source,
                                                      num_heads)
    diff = max_difference(ours, stock, kwargs)
    if not diff <= atol:
        raise RuntimeError(f'the mmpretrain VisionTransformer differs from '
                           f'ours by {diff:.3g} > {atol}; not saved.')
    out = {f'backbone.{k}': v.contiguous() for k, v in state.items()}
    out.update(head)
    os.makedirs(osp.dirname(osp.abspath(dst)), exist_ok=True)
    torch.save(dict(state_dict=out,
                    meta=dict(source=f'{src} ({source} encoder)',
                              vit_kwargs=kwargs)), dst)
    return diff


def main(argv=None):
    args = parse_args(argv)
    try:
        diff = convert(args.src, args.dst, args.source, args.num_heads,
                       args.atol)
    except (ValueError, KeyError) as e:
        raise SystemExit(f'bootmae_to_vit: {e}')
    print(f'{args.dst}: mmpretrain VisionTransformer, outputs match ours '
          f'(max abs difference {diff:.3g}).')
    return 0


if __name__ == '__main__':
    sys.exit(main())
