"""mmengine's FSDPStrategy with checkpoints renamed into place when complete.

``FSDPStrategy.save_checkpoint`` writes with mmengine's plain local writer and
ignores the checkpoint hook's ``backend_args``, so the ``atomic_local``
backend never sees FSDP checkpoints: a run killed while rank 0 writes would
leave a torn ``iter_N.pth`` that ``--resume auto`` takes for the newest
checkpoint.
"""
import os
import os.path as osp

from mmengine._strategy import FSDPStrategy
from mmengine.dist import is_main_process
from mmengine.registry import STRATEGIES

from .atomic_backend import TMP_SUFFIX, _fsync_dir


@STRATEGIES.register_module()
class AtomicFSDPStrategy(FSDPStrategy):
    """:class:`mmengine._strategy.FSDPStrategy` whose full-state-dict
    checkpoints are written as the ``atomic_local`` backend writes: to a
    hidden temporary file beside the target (``.NAME.fsdp.tmp``), fsync'ed,
    then renamed over the target by rank 0. The ``last_checkpoint`` pointer
    is written after ``save_checkpoint`` returns, so it never names an
    incomplete file.
    Sharded state dicts (one file per rank in a folder) are saved as
    mmengine saves them.

    Args:
        Same as :class:`mmengine._strategy.FSDPStrategy`.
    """

    def save_checkpoint(self, filename: str, *args, **kwargs) -> None:
        if not self._is_full_state_dict():
            return super().save_checkpoint(filename, *args, **kwargs)
        dir_path, name = osp.split(osp.abspath(filename))
        partial = osp.join(dir_path, f'.{name}.fsdp{TMP_SUFFIX}')
        super().save_checkpoint(partial, *args, **kwargs)
        if is_main_process():
            with open(partial, 'rb') as f:
                os.fsync(f.fileno())
            os.replace(partial, filename)
            _fsync_dir(dir_path)
