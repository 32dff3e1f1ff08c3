"""Checkpoint files, read safely: ``torch.load`` with ``weights_only=True``
and an allow-list of the exact types an mmengine checkpoint needs (the file
and the refused type named otherwise), ``http(s)://`` checkpoints downloaded
once into torch's hub cache, and the adapters that bring a checkpoint of
another layout (the reference implementation's) into mmengine's.
``bootmae_mm.compat`` registers :func:`mmengine_checkpoint_loader` as
mmengine's loader."""
import argparse
import os
import os.path as osp
import pickle
import sys

import numpy as np
import torch


class UnsafeCheckpointError(pickle.UnpicklingError):
    """A checkpoint holds a type outside the allow-list."""


def safe_checkpoint_globals() -> list:
    """The exact non-tensor types an mmengine/mmpretrain checkpoint needs."""
    from mmengine.logging.history_buffer import HistoryBuffer
    multiarray = np._core.multiarray if hasattr(np, '_core') \
        else np.core.multiarray
    dtype_classes = [type(np.dtype(t)) for t in (
        np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8,
        np.float16, np.float32, np.float64, np.str_)]
    # numpy 1.x pickled these as numpy.core.multiarray.*: checkpoints saved
    # before numpy 2 (most published ones) name them so
    numpy1_names = [(fn, f'numpy.core.multiarray.{fn.__name__}')
                    for fn in (multiarray._reconstruct, multiarray.scalar)]
    # the published reference checkpoints keep their arguments in an
    # argparse.Namespace (a plain attribute bag: nothing is called)
    return [argparse.Namespace,
            HistoryBuffer, np.ndarray, np.dtype, multiarray._reconstruct,
            multiarray.scalar, *dtype_classes, *numpy1_names,
            (_history_buffer_getattr, 'builtins.getattr')]


_HISTORY_BUFFER_METHODS = ('min', 'max', 'current', 'mean')


def _history_buffer_getattr(obj, name):
    """Stands in for ``builtins.getattr`` while unpickling: checkpoints saved
    by stock mmengine pickle ``HistoryBuffer``'s statistics methods as
    ``getattr(HistoryBuffer, 'mean')``. Only those four lookups are served."""
    from mmengine.logging.history_buffer import HistoryBuffer
    if obj is HistoryBuffer and name in _HISTORY_BUFFER_METHODS:
        return getattr(obj, name)
    raise pickle.UnpicklingError(
        f'getattr({obj!r}, {name!r}) is not in the allow-list')


def safe_torch_load(filename, map_location='cpu'):
    """``torch.load`` with ``weights_only=True`` and our allow-list.

    Raises:
        FileNotFoundError: the file does not exist (names it).
        UnsafeCheckpointError: the file holds a type outside the allow-list
            (names the file and the type); no code of the file has run.
        RuntimeError: the file is not a readable checkpoint (names it).
    """
    filename = osp.expanduser(str(filename))
    if not osp.isfile(filename):
        raise FileNotFoundError(f'checkpoint {filename} can not be found.')
    try:
        with torch.serialization.safe_globals(safe_checkpoint_globals()):
            return torch.load(filename, map_location=map_location,
                              weights_only=True)
    except pickle.UnpicklingError as e:
        reason = _unpickler_reason(e)
        if 'global' not in reason.lower() and 'allow-list' not in reason:
            raise RuntimeError(
                f'Could not read checkpoint {filename}: it is corrupt or not '
                f'a torch checkpoint; nothing of it was run ({reason})') \
                from None
        raise UnsafeCheckpointError(
            f'Refused to load checkpoint {filename}: it holds a Python '
            'object outside the allow-list of safe types, and loading it '
            f'could run code. Details: {reason}') from None
    except (RuntimeError, EOFError, OSError) as e:
        raise RuntimeError(f'Could not read checkpoint {filename}: it is '
                           f'truncated or not a torch checkpoint ({e})') \
            from None


def checkpoint_cache_path(url: str) -> str:
    """Where an ``http(s)://`` checkpoint is kept: ``<torch hub
    dir>/checkpoints/<file name of the URL>``, the cache mmengine's and
    torch's ``load_url`` use."""
    from urllib.parse import urlparse
    name = osp.basename(urlparse(url).path)
    if not name:
        raise ValueError(f'checkpoint URL {url} names no file.')
    return osp.join(torch.hub.get_dir(), 'checkpoints', name)


def download_checkpoint(url: str) -> str:
    """The local copy of the checkpoint at ``url``, downloaded (by local
    rank 0 when distributed; the others wait) unless already cached.

    Raises:
        RuntimeError: the download failed (names the URL).
    """
    from mmengine.dist import get_dist_info
    cached = checkpoint_cache_path(url)
    rank, world_size = get_dist_info()
    local_rank = int(os.environ.get('LOCAL_RANK', rank))
    if local_rank == 0 and not osp.isfile(cached):
        os.makedirs(osp.dirname(cached), exist_ok=True)
        print(f'Downloading {url} to {cached}', file=sys.stderr)
        try:
            # writes a temporary file and renames it when complete
            torch.hub.download_url_to_file(url, cached, progress=False)
        except Exception as e:  # URLError, HTTPError, OSError ...
            raise RuntimeError(f'Could not download checkpoint {url}: {e}'
                               ) from None
    if world_size > 1:
        torch.distributed.barrier()
    return cached


def safe_load_checkpoint(filename, map_location='cpu'):
    """:func:`safe_torch_load` of a local file or of an ``http(s)://`` URL
    (see :func:`download_checkpoint`)."""
    filename = str(filename)
    if filename.startswith(('http://', 'https://')):
        filename = download_checkpoint(filename)
    return safe_torch_load(filename, map_location)


# ``(checkpoint, filename) -> checkpoint`` functions that mmengine's loaders
# (below) apply to what they read: how a checkpoint in another layout (the
# reference implementation's) reaches mmengine's load_checkpoint, load_from
# and mmpretrain's get_model in mmengine's layout
_CHECKPOINT_ADAPTERS = []


def register_checkpoint_adapter(adapter) -> None:
    """Have mmengine's checkpoint loaders apply ``adapter(checkpoint,
    filename)`` to every checkpoint they read (once per function)."""
    if adapter not in _CHECKPOINT_ADAPTERS:
        _CHECKPOINT_ADAPTERS.append(adapter)


def mmengine_checkpoint_loader(filename, map_location='cpu'):
    """mmengine's loader for local files and ``http(s)://`` URLs:
    :func:`safe_load_checkpoint`, then the registered adapters."""
    ckpt = safe_load_checkpoint(filename, map_location)
    for adapter in _CHECKPOINT_ADAPTERS:
        ckpt = adapter(ckpt, str(filename))
    return ckpt


def _unpickler_reason(err) -> str:
    """The line of torch's weights_only error that names the refused
    global (torch wraps it in a long advice text)."""
    text = str(err)
    if 'WeightsUnpickler error:' in text:
        text = text.split('WeightsUnpickler error:', 1)[1]
        text = text.split('Please use')[0].split('Check the documentation')[0]
    return ' '.join(text.split()) or type(err).__name__
