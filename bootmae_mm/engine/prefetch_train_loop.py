"""An epoch-based train loop whose next batch is prepared during the step."""
from mmengine.runner import EpochBasedTrainLoop
from mmpretrain.registry import LOOPS

from .batch_prefetcher import BatchPrefetcher
from .model_unwrap import unwrap_model


@LOOPS.register_module()
class PrefetchEpochBasedTrainLoop(EpochBasedTrainLoop):
    """mmengine's ``EpochBasedTrainLoop`` that runs the model's data
    preprocessor on batch ``k + 1`` while step ``k`` runs.

    Each iteration calls the hooks and ``model.train_step`` as the parent
    does, but with a batch already prepared by the data preprocessor (a
    :class:`~bootmae_mm.models.data_preprocessors.PreparedBatch`, which the
    preprocessor passes through), and right after ``train_step`` has queued
    the step (before the ``after_train_iter`` hooks, whose logging waits for
    the step), it starts preparing the next batch
    (:class:`~bootmae_mm.engine.batch_prefetcher.BatchPrefetcher`: on a side
    CUDA stream, so that the decode and crop of the GPU decode path overlap
    the step). The batches and their order are those of the parent loop;
    the preparation draws no random numbers when the crops come from the
    pipeline (``RandomResizedCropBox``; ``BootMAEDataPreprocessor`` draws
    none), so a run with this loop trains exactly as one without it, and
    resumes exactly (``ExactResumeHook``). ``data_batch`` seen by hooks is
    the prepared batch. Batches are prepared within an epoch: the first
    batch of an epoch is prepared when it is needed.

    The model's data preprocessor must accept prepared batches
    (``BootMAEDataPreprocessor``, ``GPUDecodeDataPreprocessor``).

    Args:
        runner (Runner): The runner.
        dataloader (DataLoader | dict): The training data loader.
        max_epochs (int): Total training epochs.
        **kwargs: Other ``EpochBasedTrainLoop`` arguments (``val_begin``,
            ``val_interval``, ``dynamic_intervals``).
    """

    def __init__(self, runner, dataloader, max_epochs: int, **kwargs):
        super().__init__(runner, dataloader, max_epochs, **kwargs)
        preprocessor = unwrap_model(self.runner.model).data_preprocessor
        if not getattr(preprocessor, 'accepts_prepared_batches', False):
            raise TypeError(
                'train_cfg.type=PrefetchEpochBasedTrainLoop needs a data '
                'preprocessor that accepts prepared batches '
                '(model.data_preprocessor.type=BootMAEDataPreprocessor or '
                'GPUDecodeDataPreprocessor), got '
                f'{type(preprocessor).__name__}')
        self._prefetcher = None

    def run_epoch(self) -> None:
        self.runner.call_hook('before_train_epoch')
        self.runner.model.train()
        preprocessor = unwrap_model(self.runner.model).data_preprocessor
        self._prefetcher = BatchPrefetcher(self.dataloader, preprocessor,
                                           preprocessor.device)
        for idx, data_batch in enumerate(self._prefetcher):
            self.run_iter(idx, data_batch)
        self._prefetcher = None
        self.runner.call_hook('after_train_epoch')
        self._epoch += 1

    def run_iter(self, idx, data_batch) -> None:
        self.runner.call_hook(
            'before_train_iter', batch_idx=idx, data_batch=data_batch)
        outputs = self.runner.model.train_step(
            data_batch, optim_wrapper=self.runner.optim_wrapper)
        if self._prefetcher is not None:
            self._prefetcher.prepare_next()
        self.runner.call_hook(
            'after_train_iter',
            batch_idx=idx,
            data_batch=data_batch,
            outputs=outputs)
        self._iter += 1
