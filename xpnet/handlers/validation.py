"""ValidationHandler: evaluate on validation data every N epochs and/or batches."""
from .._events import BatchEnd, EpochEnd, TrainBegin
from ._counters import GluonCounters
from ._filters import PeriodFilter

__all__ = ['ValidationHandler']


class ValidationHandler(GluonCounters, TrainBegin, BatchEnd, EpochEnd):
    """Runs ``eval_fn(val_data=..., batch_axis=..., event_handlers=...)`` after every
    ``epoch_period`` epochs and every ``batch_period`` batches (the periods are event
    filters: ``xpnet.handlers.Events``). ``fit(val_data=...)`` adds one with
    ``eval_fn=estimator.evaluate``.

    Args:
        val_data: the validation DataLoader.
        eval_fn: the evaluation function, usually ``estimator.evaluate``.
        epoch_period: epochs between validations (None: never at epoch end).
        batch_period: batches between validations (None: never at batch end).
        priority: -1000, so handlers of the same event (early stopping, checkpoints) see
            fresh validation metrics.
        event_handlers: handlers passed on to ``eval_fn``.
    """

    epoch_period = PeriodFilter('epoch_end')
    batch_period = PeriodFilter('batch_end')

    def __init__(self, val_data, eval_fn, epoch_period=1, batch_period=None, priority=-1000,
                 event_handlers=None):
        if not callable(eval_fn):
            raise ValueError(f'ValidationHandler: eval_fn must be callable, got {eval_fn!r}')
        self.val_data = val_data
        self.eval_fn = eval_fn
        self.epoch_period = epoch_period
        self.batch_period = batch_period
        self.priority = priority
        self.event_handlers = event_handlers

    def train_begin(self, estimator, *args, **kwargs):
        self._bind_progress(estimator)

    def _validate(self, estimator):
        self.eval_fn(val_data=self.val_data, batch_axis=estimator.batch_axis,
                     event_handlers=self.event_handlers)

    def batch_end(self, estimator, *args, **kwargs):
        self._validate(estimator)

    def epoch_end(self, estimator, *args, **kwargs):
        self._validate(estimator)
