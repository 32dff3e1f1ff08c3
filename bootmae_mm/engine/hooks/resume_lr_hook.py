"""A run resumed with a new lr trains with it."""
import logging

from mmengine.hooks import Hook
from mmengine.optim import OptimWrapper
from mmpretrain.registry import HOOKS


def _base_lrs(optimizer):
    return [group.get('initial_lr', group['lr'])
            for group in optimizer.param_groups]


@HOOKS.register_module()
class ResumeLrHook(Hook):
    """Applies the config's lr to a resumed run.

    mmengine's resume restores the optimizer's param groups and the
    parameter schedulers from the checkpoint, so a new
    ``optim_wrapper.optimizer.lr`` (e.g. ``--cfg-options`` after a
    non-finite loss) was silently ignored. ``before_run`` (the optimizer
    and schedulers built, nothing loaded yet) records each param group's
    base lr from the config; ``before_train`` (after the resume) scales
    every group's current lr, its base lr and the schedulers' base values
    by config / checkpoint, so the schedule continues at the same point
    with the new base lr, and warns ``lr OLD -> NEW``. Nothing happens
    when they agree (also for ``load_from`` without resume).
    """

    priority = 'VERY_LOW'

    def before_run(self, runner) -> None:
        wrapper = runner.optim_wrapper
        self.wanted = _base_lrs(wrapper.optimizer) \
            if isinstance(wrapper, OptimWrapper) else None

    def before_train(self, runner) -> None:
        if not getattr(self, 'wanted', None):
            return
        optimizer = runner.optim_wrapper.optimizer
        found = _base_lrs(optimizer)
        if len(found) != len(self.wanted) or found == self.wanted:
            return
        ratios = [new / old if old else 1.
                  for new, old in zip(self.wanted, found)]
        for group, ratio, new in zip(optimizer.param_groups, ratios,
                                     self.wanted):
            group['lr'] *= ratio
            if 'initial_lr' in group:
                group['initial_lr'] = new
        for scheduler in runner.param_schedulers or []:
            if getattr(scheduler, 'param_name', None) != 'lr':
                continue
            # mmengine's schedulers have no public setter for their base
            # and last values; state_dict()/load_state_dict() is their
            # public persistence API (what checkpoints hold), so we edit its
            # keys: 'base_values' and the last value the scheduler reports,
            # which mmengine stores under its private name '_last_value'
            state = scheduler.state_dict()
            state['base_values'] = list(self.wanted)
            if state.get('_last_value') is not None:
                state['_last_value'] = [
                    v * r for v, r in zip(state['_last_value'], ratios)]
            scheduler.load_state_dict(state)
        runner.logger.log(
            logging.WARNING,
            f'Resumed with a new base lr: {found[0]:.6g} -> '
            f'{self.wanted[0]:.6g} (optim_wrapper.optimizer.lr; every param '
            'group and scheduler scaled by the same factor, the schedule '
            'continues where the checkpoint left it).')
