"""StoppingHandler: stop after a number of epochs or batches."""
from .._events import BatchEnd, EpochEnd, TrainBegin
from ._counters import GluonCounters
from ._filters import check_period

__all__ = ['StoppingHandler']


class StoppingHandler(GluonCounters, TrainBegin, BatchEnd, EpochEnd):
    """Stops training once ``max_epoch`` epochs or ``max_batch`` batches are completed.

    ``fit`` adds one with its own ``epochs``/``batches`` unless you pass one. A limit left
    None is taken from ``fit``. Limits count the whole run, including epochs restored from
    a checkpoint.

    Args:
        max_epoch: number of epochs to train, or None.
        max_batch: number of batches to train, or None.
    """

    def __init__(self, max_epoch=None, max_batch=None):
        self.max_epoch = check_period(max_epoch, 'max_epoch', 'StoppingHandler')
        self.max_batch = check_period(max_batch, 'max_batch', 'StoppingHandler')
        self.stop_training = False
        self._limits = (self.max_epoch, self.max_batch)

    def train_begin(self, estimator, *args, **kwargs):
        self._bind_progress(estimator)
        self.stop_training = False
        self._limits = (estimator.max_epoch if self.max_epoch is None else self.max_epoch,
                        estimator.max_batch if self.max_batch is None else self.max_batch)

    def batch_end(self, estimator, *args, **kwargs):
        max_batch = self._limits[1]
        if max_batch is not None and estimator.progress.batches >= max_batch:
            self.stop_training = True
        return self.stop_training

    def epoch_end(self, estimator, *args, **kwargs):
        max_epoch = self._limits[0]
        if max_epoch is not None and estimator.progress.epochs_done >= max_epoch:
            self.stop_training = True
        return self.stop_training
