"""A local file backend whose writes are atomic, for checkpoints.

mmengine's ``CheckpointHook`` saves through ``runner.save_checkpoint`` ->
``mmengine.runner.checkpoint.save_checkpoint`` -> ``file_backend.put``, with
the backend chosen by the hook's ``backend_args``; mmengine's ``LocalBackend``
writes in place, so a process killed mid-save leaves a torn file. Select this
backend with::

    default_hooks = dict(checkpoint=dict(
        type='CheckpointHook', backend_args=dict(backend='atomic_local')))

Only after ``put`` has returned (the new file complete, fsync'ed and renamed
into place) does the hook write ``work_dir/last_checkpoint``, so the pointer
never names an incomplete file.
"""
import errno
import glob
import os
import os.path as osp
import shutil
import tempfile
from pathlib import Path
from typing import Set, Union

from mmengine.fileio import LocalBackend, register_backend
from mmengine.logging import print_log

from .checkpoint_pointer import read_last_checkpoint  # noqa: F401 (re-export)

TMP_SUFFIX = '.tmp'


def _fsync_dir(dir_path: str) -> None:
    """Make a rename in ``dir_path`` durable (no-op where dirs can't be
    opened, e.g. Windows)."""
    try:
        fd = os.open(dir_path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(data: bytes, filepath: Union[str, Path]) -> None:
    """Write ``data`` to ``filepath`` so that readers (and a later run after
    a crash) see either the old file or the complete new one, never a mix.

    The bytes go to a hidden temporary file in the same directory
    (``.NAME.XXXX.tmp``), which is flushed, fsync'ed and then renamed over
    ``filepath`` with :func:`os.replace`; finally the directory is fsync'ed.
    On any error the temporary file is removed and the error re-raised;
    temporary files of the same target left by a killed writer are removed
    first.
    """
    filepath = os.fspath(filepath)
    dir_path = osp.dirname(osp.abspath(filepath))
    os.makedirs(dir_path, exist_ok=True)
    prefix = f'.{osp.basename(filepath)}.'
    for stale in glob.glob(osp.join(glob.escape(dir_path),
                                    f'{glob.escape(prefix)}*{TMP_SUFFIX}')):
        os.remove(stale)  # left by a writer of this file that was killed
    fd, tmp_path = tempfile.mkstemp(
        prefix=prefix, suffix=TMP_SUFFIX, dir=dir_path)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)  # as open() would, not 0600
        with os.fdopen(fd, 'wb') as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_path, filepath)
    except BaseException as error:
        if osp.exists(tmp_path):
            os.remove(tmp_path)
        if isinstance(error, OSError) and error.errno == errno.ENOSPC:
            free = shutil.disk_usage(dir_path).free
            raise OSError(
                errno.ENOSPC,
                f'No space left on the device to write {filepath}: it needs '
                f'{len(data) / 2**20:.1f} MiB, {free / 2**20:.1f} MiB are '
                f'free in {dir_path} (the previous checkpoint is intact; '
                'free space or set default_hooks.checkpoint.max_keep_ckpts '
                'lower)') from error
        raise
    _fsync_dir(dir_path)


@register_backend('atomic_local', force=True)
class AtomicLocalBackend(LocalBackend):
    """:class:`mmengine.fileio.LocalBackend` with atomic ``put`` /
    ``put_text`` and a ``remove`` that never deletes the checkpoint the
    ``last_checkpoint`` pointer of its directory names.

    mmengine's ``CheckpointHook`` removes the oldest checkpoint *before*
    writing the new one; with ``max_keep_ckpts=1`` that oldest one is the
    only complete checkpoint. Such a removal is deferred: it is retried on
    every later ``remove`` / ``put`` in this process, and happens once the
    pointer has moved on.

    Args:
        Same as :class:`mmengine.fileio.LocalBackend` (none).
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._deferred: Set[str] = set()

    def put(self, obj: bytes, filepath: Union[str, Path]) -> None:
        atomic_write(obj, filepath)
        self._remove_deferred()

    def put_text(self, obj: str, filepath: Union[str, Path],
                 encoding: str = 'utf-8') -> None:
        atomic_write(obj.encode(encoding), filepath)
        self._remove_deferred()

    def remove(self, filepath: Union[str, Path]) -> None:
        filepath = os.fspath(filepath)
        if self._is_pointed_to(filepath):
            print_log(
                f'Keeping {filepath} for now: last_checkpoint points to it, '
                'it will be removed once a newer checkpoint is complete.',
                logger='current')
            self._deferred.add(filepath)
        else:
            super().remove(filepath)
        self._remove_deferred()

    @staticmethod
    def _is_pointed_to(filepath: str) -> bool:
        pointed = read_last_checkpoint(osp.dirname(osp.abspath(filepath)))
        return pointed is not None and osp.exists(pointed) and \
            osp.samefile(pointed, filepath)

    def _remove_deferred(self) -> None:
        for path in list(self._deferred):
            if not osp.isfile(path):
                self._deferred.discard(path)
            elif not self._is_pointed_to(path):
                os.remove(path)
                self._deferred.discard(path)
