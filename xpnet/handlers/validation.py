"""ValidationHandler: evaluate on validation data every N epochs and/or batches."""
from ..estimator.event_handler import BatchEnd, EpochEnd, TrainBegin
from ._period import check_period, every

__all__ = ['ValidationHandler']


class ValidationHandler(TrainBegin, BatchEnd, EpochEnd):
    """Runs ``eval_fn(val_data=..., batch_axis=..., event_handlers=...)`` after every
    ``epoch_period`` epochs and every ``batch_period`` batches (see ``xpnet.handlers.every``
    for the counting rule). ``fit(val_data=...)`` adds one with ``eval_fn=estimator.evaluate``.

    Args:
        val_data: the validation DataLoader.
        eval_fn: the evaluation function, usually ``estimator.evaluate``.
        epoch_period: epochs between validations (None: never at epoch end).
        batch_period: batches between validations (None: never at batch end).
        priority: -1000, so handlers of the same event (early stopping, checkpoints) see
            fresh validation metrics.
        event_handlers: handlers passed on to ``eval_fn``.
    """

    def __init__(self, val_data, eval_fn, epoch_period=1, batch_period=None, priority=-1000,
                 event_handlers=None):
        if not callable(eval_fn):
            raise ValueError(f'ValidationHandler: eval_fn must be callable, got {eval_fn!r}')
        self.val_data = val_data
        self.eval_fn = eval_fn
        self.epoch_period = check_period(epoch_period, 'epoch_period', 'ValidationHandler')
        self.batch_period = check_period(batch_period, 'batch_period', 'ValidationHandler')
        self.priority = priority
        self.event_handlers = event_handlers

    def train_begin(self, estimator, *args, **kwargs):
        pass

    def _validate(self, estimator):
        self.eval_fn(val_data=self.val_data, batch_axis=estimator.batch_axis,
                     event_handlers=self.event_handlers)

    def batch_end(self, estimator, *args, **kwargs):
        if every(self.batch_period, estimator.progress.batches):
            self._validate(estimator)

    def epoch_end(self, estimator, *args, **kwargs):
        if every(self.epoch_period, estimator.progress.epochs_done):
            self._validate(estimator)
