"""The newest complete checkpoint of a work dir: what ``last_checkpoint``
names, or, when that pointer is missing, empty, stale or names a damaged
file, the newest complete ``epoch_N.pth`` / ``iter_N.pth``."""
import logging
import os
import os.path as osp
import re
import zipfile
from pathlib import Path
from typing import Optional, Union

from mmengine.logging import print_log

_CHECKPOINT_NAME = re.compile(r'(epoch|iter)_(\d+)\.pth')


def read_last_checkpoint(dir_path: Union[str, Path]) -> Optional[str]:
    """The path named by ``dir_path/last_checkpoint`` (as written, it may
    no longer exist), or None when there is no pointer or it is empty."""
    pointer = osp.join(os.fspath(dir_path), 'last_checkpoint')
    try:
        with open(pointer) as f:
            return f.read().strip() or None
    except OSError:
        return None


def is_complete_checkpoint(path: str) -> bool:
    """Whether ``path`` is a whole ``torch.save`` file: a zip archive whose
    central directory (written last, at the end) reads. A file cut short
    (a full disk, a copy interrupted) or overwritten with other bytes is
    not; the tensors themselves are not read."""
    try:
        with zipfile.ZipFile(path) as archive:
            return bool(archive.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


def find_resume_checkpoint(work_dir: str, logger='current') -> Optional[str]:
    """The checkpoint ``--resume auto`` continues from, or None for a fresh
    run (no checkpoint in ``work_dir``).

    The one ``last_checkpoint`` names when it is complete; otherwise (no
    pointer, an empty one from a run killed while rewriting it, one naming a
    removed or damaged file) the newest complete ``epoch_N.pth`` /
    ``iter_N.pth`` of ``work_dir``. Every file passed over is named in a
    warning to ``logger``.
    """
    named = read_last_checkpoint(work_dir)
    candidates = []
    if named is not None:
        candidates.append(named)
    if osp.isdir(work_dir):
        found = []
        for name in os.listdir(work_dir):
            match = _CHECKPOINT_NAME.fullmatch(name)
            if match:
                found.append((int(match.group(2)), osp.join(work_dir, name)))
        candidates += [path for _, path in sorted(found, reverse=True)]
    for path in candidates:
        if named is not None and path != named and osp.exists(named) and \
                osp.samefile(path, named):
            continue  # already passed over as the pointer's target
        if osp.isfile(path) and is_complete_checkpoint(path):
            return path
        why = ('does not exist' if not osp.exists(path) else
               'is not a complete checkpoint (cut short or damaged)')
        source = 'last_checkpoint names' if path == named else 'skipping'
        print_log(f'Resume: {source} {path}, which {why}; trying the next '
                  'newest checkpoint.', logger=logger,
                  level=logging.WARNING)
    return None
