"""Walking through dataset wrappers (``SeededDataset``, mmengine's
``RepeatDataset`` ...) in a config, to the dataset they wrap."""
from typing import Iterator, Tuple


def dataset_levels(dataset: dict,
                   key: str = 'dataset') -> Iterator[Tuple[str, dict]]:
    """(config key, dataset config) of ``dataset`` and of every dataset it
    wraps (its ``dataset`` entry), outermost first; ``key`` is the config
    key of ``dataset`` itself, e.g. ``'train_dataloader.dataset'``."""
    while isinstance(dataset, dict):
        yield key, dataset
        dataset, key = dataset.get('dataset'), key + '.dataset'


def find_dataset_with(dataset: dict, entry: str,
                      key: str = 'dataset') -> Tuple[str, dict]:
    """(config key, config) of the outermost level of ``dataset`` holding
    ``entry`` (e.g. ``'pipeline'``, ``'split'``), or of the innermost one
    when none does."""
    found = None
    for found in dataset_levels(dataset, key):
        if entry in found[1]:
            return found
    return found
