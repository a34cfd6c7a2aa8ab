"""The event mixins under Gluon's module path (``gluon.contrib.estimator.event_handler``).

They are defined in ``xpnet._events`` (a leaf module both the estimator and the handlers
import); see it for the protocol. Gluon's module also held the handlers: they are looked up
lazily from ``xpnet.handlers``.
"""
from .._events import (EventHandler, TrainBegin, TrainEnd, EpochBegin, EpochEnd,  # noqa: F401
                       BatchBegin, BatchEnd, check_event_handlers, sort_handlers,
                       categorize_handlers)

__all__ = ['EventHandler', 'TrainBegin', 'TrainEnd', 'EpochBegin', 'EpochEnd', 'BatchBegin',
           'BatchEnd']

_HANDLERS = ('StoppingHandler', 'MetricHandler', 'ValidationHandler', 'LoggingHandler',
             'CheckpointHandler', 'EarlyStoppingHandler', 'GradientUpdateHandler',
             'TensorBoardHandler', 'ReduceLROnPlateauHandler', 'LRWarmupHandler',
             'CSVLoggerHandler')


def __getattr__(name):
    # a lazy lookup: xpnet.handlers is imported after this package
    if name in _HANDLERS:
        from .. import handlers
        return getattr(handlers, name)
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
