"""The training progress, in epochs, that BootMAE's schedules follow."""
from mmengine.runner import EpochBasedTrainLoop


def current_epoch(runner, iters_per_epoch=None) -> int:
    """The current (0-based) epoch of an epoch-based loop (an
    ``EpochBasedTrainLoop`` or a subclass), or ``iter // iters_per_epoch``
    for any other loop when ``iters_per_epoch`` is given."""
    if iters_per_epoch:
        return runner.iter // iters_per_epoch
    if not isinstance(runner.train_loop, EpochBasedTrainLoop):
        raise ValueError(
            f'{type(runner.train_loop).__name__} is not epoch-based: set '
            'the hook\'s `iters_per_epoch` to follow a schedule in epochs.')
    return runner.epoch


def total_epochs(runner, iters_per_epoch=None) -> float:
    """The schedule length in epochs."""
    if iters_per_epoch:
        return runner.max_iters / iters_per_epoch
    current_epoch(runner)  # raises for other loops
    return runner.max_epochs
