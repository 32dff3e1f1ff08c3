"""The training progress, in epochs, that BootMAE's schedules follow."""


def current_epoch(runner, iters_per_epoch=None) -> int:
    """The current (0-based) epoch of an epoch-based loop, or
    ``iter // iters_per_epoch`` for an iteration-based one."""
    if iters_per_epoch:
        return runner.iter // iters_per_epoch
    if not hasattr(runner.train_loop, 'max_epochs') or \
            runner.train_loop.__class__.__name__.startswith('IterBased'):
        raise ValueError('an iteration-based train loop needs the hook\'s '
                         '`iters_per_epoch` to follow a schedule in epochs.')
    return runner.epoch


def total_epochs(runner, iters_per_epoch=None) -> float:
    """The schedule length in epochs."""
    if iters_per_epoch:
        return runner.max_iters / iters_per_epoch
    current_epoch(runner)  # raises for iteration-based loops
    return runner.max_epochs
