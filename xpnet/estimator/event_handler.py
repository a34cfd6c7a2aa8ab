"""The event protocol of the Estimator: six mixins, one per event.

Any object that mixes in one or more of :class:`TrainBegin`, :class:`TrainEnd`,
:class:`EpochBegin`, :class:`EpochEnd`, :class:`BatchBegin`, :class:`BatchEnd` is an event
handler. The Estimator calls ``handler.<event>(estimator, **kwargs)`` for each event the
handler mixes in, in ascending ``priority`` (default 0). ``batch_end`` and ``epoch_end``
may return True to stop training (as may setting ``estimator.stop_training = True``).

``batch_begin`` receives ``batch=``; ``batch_end`` receives ``batch=, pred=, label=,
loss=`` (lists with one entry per device). Counters (epoch, batch, samples) are not kept
by handlers: read them from ``estimator.progress`` (see :class:`~xpnet.estimator.Progress`).

A handler that keeps state worth checkpointing (a best value, a wait count) defines
``state_dict()`` returning a JSON-able dict (NumPy arrays allowed as values) and
``load_state_dict(state)``; ``CheckpointHandler`` saves and restores it.

Example::

    class PrintLoss(BatchEnd):
        def batch_end(self, estimator, *args, **kwargs):
            print(estimator.progress.batches, kwargs['loss'][0].mean().item())
"""

__all__ = ['EventHandler', 'TrainBegin', 'TrainEnd', 'EpochBegin', 'EpochEnd', 'BatchBegin',
           'BatchEnd']

EVENTS = ('train_begin', 'epoch_begin', 'batch_begin', 'batch_end', 'epoch_end', 'train_end')


class EventHandler:
    """Base class of the six event mixins (not useful on its own)."""


class TrainBegin(EventHandler):
    """Called once when ``fit`` starts, before the first epoch."""

    def train_begin(self, estimator, *args, **kwargs):
        pass


class TrainEnd(EventHandler):
    """Called once when ``fit`` ends, also when it ends by an exception (then
    ``estimator.exception`` holds it): close files and flush logs here."""

    def train_end(self, estimator, *args, **kwargs):
        pass


class EpochBegin(EventHandler):
    """Called at the start of each epoch (and of each ``evaluate`` pass)."""

    def epoch_begin(self, estimator, *args, **kwargs):
        pass


class EpochEnd(EventHandler):
    """Called at the end of each epoch (and of each ``evaluate`` pass); return True to stop."""

    def epoch_end(self, estimator, *args, **kwargs):
        return False


class BatchBegin(EventHandler):
    """Called before each batch with ``batch=`` the loader's batch."""

    def batch_begin(self, estimator, *args, **kwargs):
        pass


class BatchEnd(EventHandler):
    """Called after each batch with ``batch, pred, label, loss``; return True to stop."""

    def batch_end(self, estimator, *args, **kwargs):
        return False


_MIXINS = dict(zip(EVENTS, (TrainBegin, EpochBegin, BatchBegin, BatchEnd, EpochEnd, TrainEnd)))


def check_event_handlers(handlers, argument='event_handlers'):
    """A list of handlers from one handler, a list of them, or None; ``ValueError`` naming
    ``argument`` for anything that is not an event handler."""
    if handlers is None:
        return []
    if isinstance(handlers, EventHandler):
        return [handlers]
    if not isinstance(handlers, (list, tuple)):
        raise ValueError(f'{argument} must be an event handler or a list of them, got '
                         f'{type(handlers).__name__}')
    for h in handlers:
        if not isinstance(h, EventHandler):
            raise ValueError(
                f'{argument} contains {h!r} ({type(h).__name__}), which is not an event '
                'handler: handlers must mix in one of TrainBegin, TrainEnd, EpochBegin, '
                'EpochEnd, BatchBegin, BatchEnd (from xpnet.handlers)')
    return list(handlers)


def sort_handlers(handlers):
    """Handlers in ascending ``priority`` (missing priority counts as 0); ties keep order."""
    return sorted(handlers, key=lambda h: getattr(h, 'priority', 0))


def categorize_handlers(handlers):
    """``{event: [handlers that mix in that event, in order]}`` for the six events."""
    return {event: [h for h in handlers if isinstance(h, mixin)]
            for event, mixin in _MIXINS.items()}


_HANDLERS = ('StoppingHandler', 'MetricHandler', 'ValidationHandler', 'LoggingHandler',
             'CheckpointHandler', 'EarlyStoppingHandler', 'GradientUpdateHandler',
             'TensorBoardHandler')


def __getattr__(name):
    # Gluon's event_handler module also held the handlers; they live in xpnet.handlers,
    # which imports this module, hence the lazy lookup.
    if name in _HANDLERS:
        from .. import handlers
        return getattr(handlers, name)
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
