"""When a periodic handler fires: the one rule every handler uses.

Counts are of completed work (see :class:`xpnet.estimator.Progress`): a handler with
``batch_period=N`` fires in ``batch_end`` when ``progress.batches % N == 0`` (after batches
N, 2N, ...) and one with ``epoch_period=N`` fires in ``epoch_end`` when
``progress.epochs_done % N == 0`` (after epochs N, 2N, ...). ``None`` never fires.
"""
import numbers

__all__ = ['every', 'check_period']


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
