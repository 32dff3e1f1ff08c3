"""``RepresentationMonitorHook``: weighted k-NN accuracy and RankMe of the
encoder while a self-supervised model pretrains."""
import copy
import time
from typing import Optional

from mmengine.hooks import Hook
from mmpretrain.registry import DATASETS, HOOKS
from mmpretrain.utils import get_ori_model

from ..config_errors import ConfigValueError
from .features import (
    ENCODERS,
    POOLINGS,
    extract_features_dist,
    training_set_cfg,
)
from .knn import knn_accuracy
from .rankme import rankme

KEY = 'custom_hooks.RepresentationMonitorHook'


@HOOKS.register_module()
class RepresentationMonitorHook(Hook):
    """Every ``interval`` epochs (or iterations) and at the end of training,
    embed a labelled ``bank`` and ``query`` set with the model's encoder and
    log, as scalars of the visualizer (``scalars.json``, TensorBoard,
    ``curves.png``):

    - ``knn/top1``, ``knn/top5``: weighted k-NN accuracy (%) of the queries
      against the bank (cosine similarity, votes ``exp(sim / T)``,
      :func:`~bootmae_mm.evaluation.knn.knn_accuracy`);
    - ``rankme``: the effective rank of the bank's embeddings (label-free,
      :func:`~bootmae_mm.evaluation.rankme.rankme`);
    - ``monitor/time``: the seconds the measurement took.

    Under DDP every rank embeds its shard and the embeddings are gathered.
    With ``query=None`` only RankMe is logged (the bank needs no labels).
    Works for any mmpretrain self-supervised model with a ``backbone``
    (BootMAE, stock MAE, the ablation variants).

    Args:
        bank (dict): the bank's dataset config (with a deterministic
            pipeline, e.g. :func:`~bootmae_mm.evaluation.features.
            eval_pipeline`), or a dataloader config whose ``dataset`` is
            one (its ``batch_size`` and ``num_workers`` are used), or,
            without ``type``, settings that turn the training dataset (the
            level of ``train_dataloader.dataset`` with a ``split``) into the
            bank, e.g. ``dict(split='train')``; its pipeline then defaults
            to :func:`~bootmae_mm.evaluation.features.eval_pipeline` at the
            encoder's ``img_size``.
        query (dict, optional): the queries, as ``bank`` (e.g.
            ``dict(split='val')``).
        interval (int): measure every ``interval`` epochs (``by_epoch``) or
            iterations. Defaults to 1.
        by_epoch (bool): count ``interval`` in epochs. Defaults to True.
        initial (bool): also measure before the first iteration (the
            initialized encoder). Defaults to True.
        pooling (str): ``'mean'`` of the patch tokens or ``'cls'``.
            Defaults to ``'mean'``.
        encoder (str): ``'online'`` or ``'target'`` (momentum target).
            Defaults to ``'online'``.
        k (int): neighbours. Defaults to 20.
        temperature (float): vote temperature. Defaults to 0.07.
        batch_size (int): images per forward pass. Defaults to 64.
        num_workers (int): dataloader workers. Defaults to 0.
    """

    priority = 'LOW'

    def __init__(self, bank: dict, query: Optional[dict] = None,
                 interval: int = 1, by_epoch: bool = True,
                 initial: bool = True, pooling: str = 'mean',
                 encoder: str = 'online', k: int = 20,
                 temperature: float = 0.07, batch_size: int = 64,
                 num_workers: int = 0) -> None:
        for key, value, choices in (('pooling', pooling, POOLINGS),
                                    ('encoder', encoder, ENCODERS)):
            if value not in choices:
                raise ConfigValueError(
                    key, value, f'{KEY}.{key}={value!r}: choose from '
                    f'{choices}.')
        if interval < 1 or k < 1 or temperature <= 0:
            raise ConfigValueError(
                'interval', interval, f'{KEY}: interval ({interval}) and k '
                f'({k}) must be >= 1 and temperature ({temperature}) > 0.')
        self.bank_cfg, self.query_cfg = bank, query
        self.interval, self.by_epoch, self.initial = interval, by_epoch, \
            initial
        self.k, self.temperature = k, temperature
        self.options = dict(pooling=pooling, encoder=encoder,
                            batch_size=batch_size, num_workers=num_workers)
        self.bank = self.query = None
        # per set: a dataloader config's batch size and workers
        self.set_options = dict(bank=self.options, query=self.options)

    @staticmethod
    def _from_training_set(runner, cfg: dict) -> dict:
        """The training dataset's config updated with ``cfg``."""
        size = None
        if 'pipeline' not in cfg:
            size = get_ori_model(runner.model).backbone.img_size
            size = size if isinstance(size, int) else size[0]
        return training_set_cfg(runner.cfg.train_dataloader.dataset, size,
                                **cfg)

    def _build(self, runner, name: str, cfg: dict, labelled: bool):
        """The dataset of ``bank`` / ``query``, refused (naming the key)
        when it does not build, is empty or has no labels."""
        key = f'{KEY}.{name}'
        if not isinstance(cfg, dict):
            raise ConfigValueError(name, cfg, f'{key}: a dataset or '
                                   f'dataloader config (dict), got {cfg!r}.')
        cfg = copy.deepcopy(cfg)
        if 'dataset' in cfg:  # a dataloader config
            self.set_options[name] = dict(
                self.options,
                batch_size=cfg.get('batch_size', self.options['batch_size']),
                num_workers=cfg.get('num_workers',
                                    self.options['num_workers']))
            cfg = cfg['dataset']
        try:
            if 'type' not in cfg:
                cfg = self._from_training_set(runner, cfg)
            dataset = DATASETS.build(cfg)
        except Exception as e:
            raise ConfigValueError(
                name, cfg, f'{key}: the dataset does not build: '
                f'{type(e).__name__}: {e}') from e
        if len(dataset) == 0:
            raise ConfigValueError(name, cfg, f'{key}: the dataset is '
                                   'empty; the monitor needs images.')
        if labelled:
            sample = dataset[0]
            ds = sample.get('data_samples') if isinstance(sample, dict) \
                else None
            if ds is None or 'gt_label' not in ds:
                raise ConfigValueError(
                    name, cfg, f'{key}: its samples have no label '
                    '(data_samples.gt_label after PackInputs); k-NN needs '
                    'a labelled bank and query set.')
        return dataset

    def before_train(self, runner) -> None:
        labelled = self.query_cfg is not None
        self.bank = self._build(runner, 'bank', self.bank_cfg, labelled)
        if labelled:
            self.query = self._build(runner, 'query', self.query_cfg, True)
        if self.initial and runner.iter == 0:
            self.measure(runner)

    def after_train_epoch(self, runner) -> None:
        if self.by_epoch and (self.every_n_epochs(runner, self.interval)
                              or self.is_last_train_epoch(runner)):
            self.measure(runner)

    def after_train_iter(self, runner, batch_idx: int, data_batch=None,
                         outputs=None) -> None:
        if not self.by_epoch and (
                self.every_n_train_iters(runner, self.interval)
                or self.is_last_train_iter(runner)):
            self.measure(runner, runner.iter + 1)  # iterations done

    def compute(self, model) -> dict:
        """The scalars for ``model`` (unwrapped), in eval mode; its mode is
        restored afterwards."""
        was_training = model.training
        model.eval()
        try:
            bank, bank_labels = extract_features_dist(
                model, self.bank, **self.set_options['bank'])
            scalars = {'rankme': rankme(bank)}
            if self.query is not None:
                queries, query_labels = extract_features_dist(
                    model, self.query, **self.set_options['query'])
                acc = knn_accuracy(bank, bank_labels, queries, query_labels,
                                   self.k, self.temperature)
                scalars.update({'knn/top1': acc['top1'],
                                'knn/top5': acc['top5']})
        finally:
            model.train(was_training)
        return scalars

    def measure(self, runner, step: Optional[int] = None) -> dict:
        """Compute, log and return the scalars after ``step`` iterations
        (default ``runner.iter``)."""
        step = runner.iter if step is None else step
        start = time.perf_counter()
        scalars = self.compute(get_ori_model(runner.model))
        scalars['monitor/time'] = time.perf_counter() - start
        runner.visualizer.add_scalars(scalars, step=step)
        runner.logger.info(
            'RepresentationMonitorHook after %d iterations: %s', step,
            ', '.join(f'{k} {v:.4g}' for k, v in scalars.items()))
        return scalars
