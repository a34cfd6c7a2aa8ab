"""``xpnet.handlers``: the Estimator's event handlers (also importable from
``xpnet.estimator``), one module each, and the six event mixins.

Handlers run in ascending ``priority``: GradientUpdateHandler -2000, MetricHandler and
ValidationHandler -1000, LoggingHandler inf, the others 0. Periods ("every N batches /
epochs") follow one rule, :func:`every`; CheckpointHandler and EarlyStoppingHandler share
one monitor logic (``_monitor.Monitor``).
"""
from ..estimator.event_handler import (EventHandler, TrainBegin, TrainEnd,  # noqa: F401
                                       EpochBegin, EpochEnd, BatchBegin, BatchEnd)
from ._period import every  # noqa: F401
from .stopping import StoppingHandler  # noqa: F401
from .metric import MetricHandler  # noqa: F401
from .validation import ValidationHandler  # noqa: F401
from .gradient_update import GradientUpdateHandler  # noqa: F401
from .logging import LoggingHandler  # noqa: F401
from .checkpoint import CheckpointHandler, CheckpointError  # noqa: F401
from .early_stopping import EarlyStoppingHandler  # noqa: F401
from .tensorboard import TensorBoardHandler  # noqa: F401

__all__ = ['EventHandler', 'TrainBegin', 'TrainEnd', 'EpochBegin', 'EpochEnd', 'BatchBegin',
           'BatchEnd', 'every', 'StoppingHandler', 'MetricHandler', 'ValidationHandler',
           'GradientUpdateHandler', 'LoggingHandler', 'CheckpointHandler', 'CheckpointError',
           'EarlyStoppingHandler', 'TensorBoardHandler']
