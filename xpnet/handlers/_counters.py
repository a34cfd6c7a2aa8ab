"""Gluon's public handler counters (``current_epoch``, ``current_batch``, ``batch_index``),
read from the estimator's :class:`~xpnet.estimator.Progress`, the one place that counts."""

__all__ = ['GluonCounters']


class GluonCounters:
    """Read-only counters with Gluon's names for user code that reads them.

    Gluon's handlers each kept their own copies; here they are views of the progress of
    the ``fit`` the handler last started in (bound in ``train_begin``; 0 before any):

    * ``current_epoch``: epochs completed;
    * ``current_batch``: batches completed in the whole run;
    * ``batch_index``: batches completed in the current epoch.
    """

    _progress = None

    def _bind_progress(self, estimator):
        self._progress = estimator.progress

    @property
    def current_epoch(self):
        return self._progress.epochs_done if self._progress is not None else 0

    @property
    def current_batch(self):
        return self._progress.batches if self._progress is not None else 0

    @property
    def batch_index(self):
        return self._progress.epoch_batches if self._progress is not None else 0
