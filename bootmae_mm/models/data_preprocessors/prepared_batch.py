"""A batch that a data preprocessor has already prepared (prefetching)."""


class PreparedBatch(dict):
    """The output of a data preprocessor (``inputs`` on the device,
    ``data_samples``), marked so that the preprocessor passes it through
    unchanged when the model's ``train_step`` calls it again.

    :class:`~bootmae_mm.engine.PrefetchEpochBasedTrainLoop` prepares the
    next batch while the current step runs and hands the model such a
    batch; the preprocessors that accept it say so with
    ``accepts_prepared_batches = True``.
    """
