"""Embeddings of a labelled dataset from a self-supervised model's encoder,
for k-NN, RankMe and linear probes; sharded across ranks and gathered."""
import copy
import math
from typing import Dict, Optional, Sequence, Tuple, Union

import torch
from mmengine import dist
from mmengine.dataset import default_collate
from torch.utils.data import DataLoader, Subset

#: pooling of the encoder's tokens into one embedding per image
POOLINGS = ('mean', 'cls')
#: which encoder of the model: its backbone or its momentum target
ENCODERS = ('online', 'target')


def eval_pipeline(size: int) -> list:
    """A deterministic test pipeline: resize the short edge to ``size``,
    centre crop ``size``."""
    return [
        dict(type='LoadImageFromFile'),
        dict(type='ResizeEdge', scale=size, edge='short', backend='pillow',
             interpolation='bicubic'),
        dict(type='CenterCrop', crop_size=size),
        dict(type='PackInputs'),
    ]


def training_set_cfg(train_dataset: dict, size: Optional[int],
                     require_split: bool = False, **updates) -> dict:
    """A copy of the config's ``train_dataloader.dataset`` (the one inside
    any wrapper that has a ``split``) updated with ``updates``, with the
    :func:`eval_pipeline` of ``size`` unless they give a pipeline.

    Args:
        train_dataset (dict): the config's ``train_dataloader.dataset``.
        size (int, optional): image size of the evaluation pipeline
            (unused when ``updates`` give a ``pipeline``).
        require_split (bool): refuse a dataset without ``split``.
            Defaults to False.
        **updates: entries to set (e.g. ``split='val'``).

    Raises:
        ValueError: ``require_split`` and the dataset's config sets no
            ``split``.
    """
    from ..datasets.dataset_wrappers import find_dataset_with
    _, dataset = find_dataset_with(copy.deepcopy(train_dataset), 'split')
    if require_split and 'split' not in dataset:
        raise ValueError(
            f'train_dataloader.dataset ({dataset.get("type")}) has no '
            '`split`')
    dataset.update(updates)
    if 'pipeline' not in updates:
        dataset['pipeline'] = eval_pipeline(size)
    return dataset


def select_encoder(model, encoder: str = 'online'):
    """``model.backbone`` (``'online'``) or ``model.target_encoder``
    (``'target'``, the momentum copy of BootMAE and its variants)."""
    if encoder not in ENCODERS:
        raise ValueError(f'encoder={encoder!r}: choose from {ENCODERS}.')
    module = model.backbone if encoder == 'online' else \
        getattr(model, 'target_encoder', None)
    if module is None:
        raise ValueError(f'encoder={encoder!r}: {type(model).__name__} has '
                         'no momentum target (target_encoder); use '
                         '"online".')
    return module


def encoder_tokens(encoder, inputs: torch.Tensor) -> torch.Tensor:
    """The encoder's output on whole (unmasked) images: (B, 1 + N, D)
    tokens with the class token first, or (B, D, H, W) feature maps.

    An encoder with ``encode`` (BootMAE's contract) gives its ``latent``
    (after the final norm); mmpretrain's ``MAEViT`` runs unmasked
    (``mask=None``); any other backbone is called as is (a ViT should have
    ``out_type='raw'``)."""
    if callable(getattr(encoder, 'encode', None)):
        return encoder.encode(inputs).latent
    from mmpretrain.models import MAEViT
    out = encoder(inputs, mask=None) if isinstance(encoder, MAEViT) \
        else encoder(inputs)
    return out[-1] if isinstance(out, (tuple, list)) else out


def pool(tokens: torch.Tensor, pooling: str = 'mean',
         with_cls: bool = True) -> torch.Tensor:
    """(B, D) embeddings: ``'mean'`` of the patch tokens (or of a feature
    map's positions), or the ``'cls'`` token."""
    if pooling not in POOLINGS:
        raise ValueError(f'pooling={pooling!r}: choose from {POOLINGS}.')
    if tokens.dim() == 4:  # (B, D, H, W) feature map
        if pooling == 'cls':
            raise ValueError('pooling="cls": the encoder gives feature '
                             'maps, no class token; use "mean".')
        return tokens.mean((2, 3))
    if tokens.dim() == 2:  # already pooled
        return tokens
    if pooling == 'cls':
        if not with_cls:
            raise ValueError('pooling="cls": the encoder has no class '
                             'token; use "mean".')
        return tokens[:, 0]
    return (tokens[:, 1:] if with_cls else tokens).mean(1)


def _preprocess(model, batch: dict) -> torch.Tensor:
    inputs = model.data_preprocessor(batch, training=False)['inputs']
    return inputs[0] if isinstance(inputs, (list, tuple)) else inputs


@torch.no_grad()
def extract_features(model, dataset,
                     pooling: Union[str, Sequence[str]] = 'mean',
                     encoder: str = 'online', batch_size: int = 64,
                     num_workers: int = 0,
                     indices: Optional[Sequence[int]] = None
                     ) -> Tuple[Union[torch.Tensor, Dict[str, torch.Tensor]],
                                torch.Tensor]:
    """(N, D) float32 embeddings (not normalized) and (N,) labels (-1 where
    a sample has none) of ``dataset`` (or its ``indices``), in order, on
    the CPU. The model runs in its current mode (call ``model.eval()``).
    With several poolings, one pass of the encoder gives a dict of
    embeddings, one per pooling.

    Args:
        model: an (unwrapped) mmpretrain self-supervised model with a
            ``backbone`` and a ``data_preprocessor``.
        dataset: an mmpretrain dataset with a deterministic pipeline
            ending in ``PackInputs`` (:func:`eval_pipeline`).
        pooling (str | Sequence[str]): see :func:`pool`, or several
            of them. Defaults to ``'mean'``.
        encoder (str): see :func:`select_encoder`. Defaults to ``'online'``.
        batch_size (int): images per forward pass. Defaults to 64.
        num_workers (int): dataloader workers. Defaults to 0.
        indices (Sequence[int], optional): a subset, in this order.
    """
    module = select_encoder(model, encoder)
    with_cls = getattr(module, 'with_cls_token', True)
    subset = dataset if indices is None else Subset(dataset, list(indices))
    # its own generator: the loader's base seed is not drawn from the
    # global RNG, so measuring leaves the training's random stream alone
    loader = DataLoader(subset, batch_size=batch_size, shuffle=False,
                        num_workers=num_workers, collate_fn=default_collate,
                        generator=torch.Generator().manual_seed(0))
    poolings = (pooling, ) if isinstance(pooling, str) else tuple(pooling)
    feats, labels = {kind: [] for kind in poolings}, []
    for batch in loader:
        tokens = encoder_tokens(module, _preprocess(model, batch))
        for kind in poolings:
            feats[kind].append(pool(tokens, kind, with_cls).float().cpu())
        labels += [int(ds.gt_label) if 'gt_label' in ds else -1
                   for ds in batch['data_samples']]
    feats = {kind: torch.cat(f) if f else torch.zeros(0, 0)
             for kind, f in feats.items()}
    labels = torch.tensor(labels, dtype=torch.long)
    return (feats[pooling] if isinstance(pooling, str) else feats), labels


def gather_shards(local: torch.Tensor, total: int) -> torch.Tensor:
    """Put back in order the rows that rank ``r`` of ``W`` computed for the
    items ``r, r + W, r + 2W, ...`` of ``total``: every rank gets the
    (total, ...) tensor. A no-op in a single process."""
    world = dist.get_world_size()
    if world == 1:
        return local
    rows = math.ceil(total / world)
    padded = local.new_zeros((rows, ) + tuple(local.shape[1:]))
    padded[:len(local)] = local
    parts = dist.all_gather(padded)
    return torch.stack([p.cpu() for p in parts], 1).flatten(0, 1)[:total]


def extract_features_dist(model, dataset, **kwargs
                          ) -> Tuple[torch.Tensor, torch.Tensor]:
    """:func:`extract_features` with every rank extracting its shard
    (items ``rank::world_size``), gathered on every rank in dataset order.
    """
    rank, world = dist.get_rank(), dist.get_world_size()
    total = len(dataset)
    feats, labels = extract_features(
        model, dataset, indices=range(rank, total, world), **kwargs)
    if world > 1:
        # a rank with an empty shard still needs the width
        width = torch.tensor([feats.shape[1] if len(feats) else 0])
        width = int(max(dist.all_gather(width)))
        if not len(feats):
            feats = torch.zeros(0, width)
        feats = gather_shards(feats, total)
        labels = gather_shards(labels, total)
    return feats, labels
