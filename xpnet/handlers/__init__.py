"""``xpnet.handlers``: the Estimator's event handlers (also importable from
``xpnet.estimator``), one module each, the six event mixins and the event filters.

Handlers run in ascending ``priority``: GradientUpdateHandler -2000, MetricHandler and
ValidationHandler -1000, LoggingHandler inf, the others 0. When a handler runs is said by
event filters (:class:`Events`, :func:`filtered`); the Gluon period arguments
(``batch_period``, ``epoch_period``, ``log_interval``) are such filters. CheckpointHandler,
EarlyStoppingHandler and ReduceLROnPlateauHandler share one monitor logic
(``_monitor.Monitor``).

Handlers read what they need through the estimator's public hooks: ``estimator.progress``
(counters), ``estimator.metric_value(m)`` (metric values; reduced across processes in a
distributed run), ``estimator.is_writer`` (whether this process writes files),
``estimator.log(...)`` (log lines), ``estimator.after_event(fn)`` and
``estimator.resume_point``. In a distributed run every rank runs every handler:
``metric_value`` is then a collective, called on every rank; only the writing waits for
``is_writer``.
"""
from .._events import (EventHandler, TrainBegin, TrainEnd, EpochBegin, EpochEnd,  # noqa: F401
                       BatchBegin, BatchEnd)
from ._filters import EventFilter, Events, every, filtered  # noqa: F401
from .stopping import StoppingHandler  # noqa: F401
from .metric import MetricHandler  # noqa: F401
from .validation import ValidationHandler  # noqa: F401
from .gradient_update import GradientUpdateHandler  # noqa: F401
from .logging import LoggingHandler  # noqa: F401
from .checkpoint import CheckpointHandler, CheckpointError  # noqa: F401
from .early_stopping import EarlyStoppingHandler  # noqa: F401
from .tensorboard import TensorBoardHandler  # noqa: F401
from .lr_plateau import ReduceLROnPlateauHandler  # noqa: F401
from .lr_warmup import LRWarmupHandler  # noqa: F401
from .csv_logger import CSVLoggerHandler  # noqa: F401

__all__ = ['EventHandler', 'TrainBegin', 'TrainEnd', 'EpochBegin', 'EpochEnd', 'BatchBegin',
           'BatchEnd', 'EventFilter', 'Events', 'every', 'filtered', 'StoppingHandler',
           'MetricHandler', 'ValidationHandler', 'GradientUpdateHandler', 'LoggingHandler',
           'CheckpointHandler', 'CheckpointError', 'EarlyStoppingHandler',
           'TensorBoardHandler', 'ReduceLROnPlateauHandler', 'LRWarmupHandler',
           'CSVLoggerHandler']
