"""When a handler runs: event filters, the one rule for "every N", "once at step s" or a
predicate (Ignite's ``Events.ITERATION_COMPLETED(every=n)`` is the model).

Counting convention (see :class:`xpnet.estimator.Progress`): counts are of completed work
at ``*_end`` events and of the unit about to run at ``*_begin`` events, from 1:

* ``batch_end``: ``progress.batches`` (the batch just trained is counted);
* ``batch_begin``: ``progress.batches + 1`` (the batch about to run);
* ``epoch_end``: ``progress.epochs_done``; ``epoch_begin``: ``progress.epoch + 1``.

So ``every=N`` fires after batches (epochs) N, 2N, ... and the ``batch_begin`` and
``batch_end`` of the same batch agree. ``within_epoch=True`` counts batches from the start
of the current epoch instead (``progress.epoch_batches``). During ``evaluate`` the counts
are those of the evaluation pass (``estimator.eval_progress``).

Gluon's period arguments (``batch_period``, ``epoch_period``, ``log_interval``, ...) are
filters of this kind: ``batch_period=N`` is ``Events.BATCH_END(every=N)``.

Example::

    from xpnet.handlers import Events, filtered
    est.fit(train, epochs=5, event_handlers=[
        filtered(PrintLoss(), Events.BATCH_END(every=50)),       # after batches 50, 100, ...
        filtered(Snapshot(), Events.EPOCH_END(once=3)),          # after the third epoch only
        filtered(Probe(), Events.BATCH_END(event_filter=lambda est, n: n in (1, 10, 100)))])
"""
import numbers

from .._events import EVENTS, MIXINS

__all__ = ['EventFilter', 'Events', 'filtered', 'every', 'check_period', 'PeriodFilter']

_FILTERABLE = ('batch_begin', 'batch_end', 'epoch_begin', 'epoch_end')


def check_period(value, argument, owner):
    """``value`` if it is None or a positive integer, else a ``ValueError`` naming it."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value <= 0:
        raise ValueError(f'{owner}: {argument} must be a positive integer or None, '
                         f'got {value!r}')
    return int(value)


def every(period, count):
    """True when ``count`` completed units end a period of ``period`` (None: never)."""
    return period is not None and count > 0 and count % period == 0


class EventFilter:
    """Decides whether an event runs: ``filter(estimator)`` -> bool.

    Give exactly one of ``every``, ``once`` and ``event_filter``. Build them with
    :data:`Events` (``Events.BATCH_END(every=100)``); attach them to any handler with
    :func:`filtered`, or call one inside your own handler's method.

    Args:
        event: 'batch_begin', 'batch_end', 'epoch_begin' or 'epoch_end'.
        every: run when the count is a multiple of ``every``.
        once: run only when the count equals ``once``.
        event_filter: ``fn(estimator, count) -> bool``.
        within_epoch: for batch events, count batches from the start of the epoch.

    Attributes:
        never: True for a filter that never fires (a Gluon period of None).
    """

    def __init__(self, event, every=None, once=None, event_filter=None, within_epoch=False,
                 _never=False):
        if event not in _FILTERABLE:
            raise ValueError(f'EventFilter: event must be one of {_FILTERABLE}, got {event!r}')
        given = [a for a, v in (('every', every), ('once', once),
                                ('event_filter', event_filter)) if v is not None]
        if len(given) != 1 and not _never:
            raise ValueError('EventFilter: give exactly one of every, once and event_filter, '
                             f'got {given or "none"}')
        self.event = event
        self.every = check_period(every, 'every', 'EventFilter')
        self.once = check_period(once, 'once', 'EventFilter')
        if event_filter is not None and not callable(event_filter):
            raise ValueError('EventFilter: event_filter must be callable as '
                             f'fn(estimator, count), got {event_filter!r}')
        self.event_filter = event_filter
        self.within_epoch = bool(within_epoch)
        if self.within_epoch and not event.startswith('batch'):
            raise ValueError('EventFilter: within_epoch applies to batch events only')
        self.never = bool(_never)

    def count(self, estimator):
        """The count this filter tests for ``estimator`` now (see the module docstring)."""
        p = estimator.eval_progress if estimator.evaluating else estimator.progress
        if self.event.startswith('batch'):
            n = p.epoch_batches if self.within_epoch else p.batches
            return n + 1 if self.event == 'batch_begin' else n
        return p.epoch + 1 if self.event == 'epoch_begin' else p.epochs_done

    def __call__(self, estimator):
        if self.never:
            return False
        n = self.count(estimator)
        if self.every is not None:
            return n > 0 and n % self.every == 0
        if self.once is not None:
            return n == self.once
        return bool(self.event_filter(estimator, n))

    def __repr__(self):
        if self.never:
            return f'EventFilter({self.event!r}, never)'
        what = next(f'{k}={v!r}' for k, v in (('every', self.every), ('once', self.once),
                                               ('event_filter', self.event_filter))
                    if v is not None)
        return f'EventFilter({self.event!r}, {what}{", within_epoch" * self.within_epoch})'


class _EventKind:
    """``Events.BATCH_END`` and friends: call with ``every=``, ``once=`` or
    ``event_filter=`` to get an :class:`EventFilter` for that event."""

    def __init__(self, event):
        self.event = event

    def __call__(self, every=None, once=None, event_filter=None, within_epoch=False):
        return EventFilter(self.event, every, once, event_filter, within_epoch)

    def __repr__(self):
        return f'Events.{self.event.upper()}'


class Events:
    """The filterable events, as in Ignite: ``Events.BATCH_END(every=100)``,
    ``Events.EPOCH_END(every=2)``, ``Events.BATCH_END(once=500)``,
    ``Events.EPOCH_BEGIN(event_filter=lambda est, n: n > 3)``."""
    BATCH_BEGIN = _EventKind('batch_begin')
    BATCH_END = _EventKind('batch_end')
    EPOCH_BEGIN = _EventKind('epoch_begin')
    EPOCH_END = _EventKind('epoch_end')


def filtered(handler, *filters):
    """Make ``handler`` run its events only when their filters say so; returns ``handler``.

    Each filter applies to its own event (``Events.BATCH_END(...)`` to ``batch_end``); a
    filter replaces any earlier one of the same event, including the one a Gluon period
    argument set (``batch_period``).

    Example::

        est.fit(train, epochs=3, event_handlers=[filtered(PrintLoss(), Events.BATCH_END(every=10))])
    """
    for f in filters:
        if not isinstance(f, EventFilter):
            raise ValueError(f'filtered: expected EventFilters such as Events.BATCH_END(every=10)'
                             f', got {f!r}')
        if not isinstance(handler, MIXINS[f.event]):
            raise ValueError(f'filtered: {type(handler).__name__} has no {f.event} event '
                             f'(it does not mix in {MIXINS[f.event].__name__})')
    handler.event_filters = dict(handler.event_filters or {}, **{f.event: f for f in filters})
    return handler


def period_filter(event, period):
    """The filter of a Gluon period argument: every ``period``, or never for None."""
    if period is None:
        return EventFilter(event, _never=True)
    return EventFilter(event, every=period)


class PeriodFilter:
    """A Gluon period argument (``batch_period``, ``epoch_period``) stored as the handler's
    event filter for ``event``, so that setting the attribute later changes the filter too.

    Example::

        class Snapshot(BatchEnd):
            batch_period = PeriodFilter('batch_end')
            def __init__(self, batch_period=10):
                self.batch_period = batch_period      # checked, and the filter set
    """

    def __init__(self, event):
        assert event in EVENTS
        self.event = event
        self.name = None

    def __set_name__(self, owner, name):
        self.name = name

    def __get__(self, obj, owner=None):
        if obj is None:
            return self
        return obj.__dict__.get(self.name)

    def __set__(self, obj, value):
        value = check_period(value, self.name, type(obj).__name__)
        obj.__dict__[self.name] = value
        obj.event_filters = dict(obj.event_filters or {},
                                 **{self.event: period_filter(self.event, value)})
