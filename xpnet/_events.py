"""The event protocol of the Estimator: six mixins, one per event, and how they are dispatched.

This module imports nothing from xpnet: both ``xpnet.estimator`` (which dispatches the
events) and ``xpnet.handlers`` (which implement them) import it, so neither imports the
other for the protocol. Import the mixins from ``xpnet.handlers`` (or ``xpnet.estimator``).

Any object that mixes in one or more of :class:`TrainBegin`, :class:`TrainEnd`,
:class:`EpochBegin`, :class:`EpochEnd`, :class:`BatchBegin`, :class:`BatchEnd` is an event
handler. The Estimator calls ``handler.<event>(estimator, **kwargs)`` for each event the
handler mixes in, in ascending ``priority`` (default 0). ``batch_end`` and ``epoch_end``
may return True to stop training (as may setting ``estimator.stop_training = True``).

``batch_begin`` receives ``batch=``; ``batch_end`` receives ``batch=, pred=, label=,
loss=`` (lists with one entry per device). Counters (epoch, batch, samples) are not kept
by handlers: read them from ``estimator.progress`` (see :class:`~xpnet.estimator.Progress`).

A handler's ``event_filters`` (``{event name: filter}``, see ``xpnet.handlers.Events`` and
``xpnet.handlers.filtered``) says *when* it runs: a filter is called with the estimator and
the event runs only when it returns True. Filters are read when ``fit``/``evaluate`` starts.

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
    """Base class of the six event mixins (not useful on its own).

    Attributes:
        event_filters: None, or ``{event name: filter}``; ``filter(estimator)`` decides
            whether the event runs this time (see ``xpnet.handlers.Events``).
    """

    event_filters = None


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


MIXINS = dict(zip(EVENTS, (TrainBegin, EpochBegin, BatchBegin, BatchEnd, EpochEnd, TrainEnd)))


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
    """``{event: [(handler, method, filter), ...]}`` for the six events, in the handlers'
    order: the Estimator calls ``method(estimator, **kwargs)`` when ``filter`` is None or
    ``filter(estimator)`` is True. Handlers whose filter never fires are left out."""
    out = {}
    for event, mixin in MIXINS.items():
        calls = []
        for h in handlers:
            if not isinstance(h, mixin):
                continue
            event_filter = (h.event_filters or {}).get(event)
            if getattr(event_filter, 'never', False):
                continue        # e.g. batch_period=None: no call at all
            calls.append((h, getattr(h, event), event_filter))
        out[event] = calls
    return out


def batch_size_of(loss):
    """Number of samples in a batch: the summed first-axis length of the per-device
    losses of ``batch_end``'s ``loss=`` (Gluon's rule; a loss has one value per sample)."""
    if not isinstance(loss, (list, tuple)):
        loss = [loss]
    n = 0
    for l in loss:
        shape = getattr(l, 'shape', ())
        n += shape[0] if len(shape) else 1
    return n


def is_stateful(handler):
    """True if ``handler`` keeps checkpointed state (``state_dict``/``load_state_dict``)."""
    return callable(getattr(handler, 'state_dict', None)) and \
        callable(getattr(handler, 'load_state_dict', None))
