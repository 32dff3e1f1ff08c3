"""Errors about a setting, carrying its key, and their translation into
the config keys (and file) that set it."""
import re
from contextlib import contextmanager
from typing import List

from mmengine.config import Config


class ConfigValueError(ValueError):
    """A bad value of a component's argument ``key``: raised by the
    component (mmpretrain style), it carries the argument name and the
    value, so that :func:`explain_config_errors` can name the config keys
    that set it.

    Args:
        key (str): the argument (config key) name, e.g. ``'img_size'``.
        value: the bad value, as given.
        message (str): what is wrong, starting ``key=value``.
    """

    def __init__(self, key: str, value, message: str) -> None:
        super().__init__(message)
        self.key = key
        self.value = value


def key_paths(node, key, prefix=''):
    """(dotted config path, the dict holding it) of every ``key`` in a
    nested dict/list."""
    if isinstance(node, dict):
        for k, v in node.items():
            path = f'{prefix}.{k}' if prefix else str(k)
            if k == key:
                yield path, node
            yield from key_paths(v, key, path)
    elif isinstance(node, (list, tuple)):
        for i, v in enumerate(node):
            yield from key_paths(v, key, f'{prefix}[{i}]')


def _value_paths(cfg: Config, key: str, value) -> List[str]:
    """Config paths of every ``key`` that holds ``value``."""
    return [p for p, holder in key_paths(cfg.to_dict(), key)
            if holder[key] == value]


@contextmanager
def explain_config_errors(cfg: Config):
    """Re-raise a :class:`ConfigValueError` with the config keys that set
    its value (a key in several places, e.g. the mask count in the model
    and in the pipeline, gives all of them) and the config file, and
    "X.__init__() got an unexpected keyword argument 'k'" (Python's
    wording) from building the config's components with the config key
    that holds it."""
    try:
        yield
    except ConfigValueError as e:
        paths = _value_paths(cfg, e.key, e.value)
        if not paths:
            raise
        where = f' in {cfg.filename}' if cfg.filename else ''
        raise ConfigValueError(e.key, e.value,
                               f'{" / ".join(paths)}{where}: {e}') from e
    except TypeError as e:
        match = re.search(r"(\w+)\.__init__\(\) got an unexpected keyword "
                          r"argument '(\w+)'", str(e))
        if not match:
            raise
        cls_name, key = match.groups()
        paths = list(key_paths(cfg.to_dict(), key))
        typed = [p for p, holder in paths
                 if str(holder.get('type')).split('.')[-1] == cls_name]
        paths = typed or [p for p, _ in paths]
        if not paths:
            raise
        where = f' in {cfg.filename}' if cfg.filename else ''
        raise TypeError(
            f'{" / ".join(paths)}: unknown key "{key}" for {cls_name}{where} '
            f'({e})') from e


