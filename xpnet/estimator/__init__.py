"""``xpnet.estimator``: Gluon's Estimator (fit/evaluate loops driven by event handlers),
the BatchProcessor, the event protocol, training Progress and History. The handlers of
``xpnet.handlers`` are re-exported here too, as in ``gluon.contrib.estimator``.

Example::

    from xpnet.estimator import Estimator, CheckpointHandler
    est = Estimator(net, xpnet.loss.SoftmaxCrossEntropyLoss(), trainer=trainer)
    history = est.fit(train_loader, val_loader, epochs=5,
                      event_handlers=[CheckpointHandler('ckpt')])
"""
from .event_handler import (EventHandler, TrainBegin, TrainEnd, EpochBegin,  # noqa: F401
                            EpochEnd, BatchBegin, BatchEnd)
from .progress import Progress  # noqa: F401
from .history import History  # noqa: F401
from .batch_processor import BatchProcessor  # noqa: F401
from .lr_finder import LRFinderResult  # noqa: F401
from .estimator import Estimator  # noqa: F401
from ..handlers import (StoppingHandler, MetricHandler, ValidationHandler,  # noqa: F401
                        GradientUpdateHandler, LoggingHandler, CheckpointHandler,
                        CheckpointError, EarlyStoppingHandler, TensorBoardHandler,
                        ReduceLROnPlateauHandler, LRWarmupHandler, CSVLoggerHandler)

__all__ = ['Estimator', 'BatchProcessor', 'Progress', 'History', 'LRFinderResult',
           'EventHandler', 'TrainBegin', 'TrainEnd', 'EpochBegin', 'EpochEnd', 'BatchBegin',
           'BatchEnd', 'StoppingHandler', 'MetricHandler', 'ValidationHandler',
           'GradientUpdateHandler', 'LoggingHandler', 'CheckpointHandler', 'CheckpointError',
           'EarlyStoppingHandler', 'TensorBoardHandler', 'ReduceLROnPlateauHandler',
           'LRWarmupHandler', 'CSVLoggerHandler']
