"""TensorBoardHandler: metrics, learning rate and weight histograms for TensorBoard."""
import math

from .._events import BatchEnd, EpochEnd, TrainBegin, TrainEnd
from ._filters import Events, PeriodFilter, check_period
from .metric import check_metric_list

__all__ = ['TensorBoardHandler']


def _split_name(name):
    """``'training accuracy'`` -> ``('accuracy', 'training')``."""
    for role in ('training', 'validation'):
        if name.startswith(role + ' '):
            return name[len(role) + 1:], role
    return name, None


def _tag(name, prefix=''):
    base, role = _split_name(name)
    base = base.replace(' ', '_')
    return prefix + (f'{base}/{role}' if role else base)


class TensorBoardHandler(TrainBegin, TrainEnd, EpochEnd, BatchEnd):
    """Writes TensorBoard event files (with tensorboardX) to ``log_dir``.

    At each epoch end (step = the epoch index): every training metric, every validation
    metric when validation ran in that epoch and the learning rate; every
    ``batch_period`` batches (step = batches trained): the training metrics and learning
    rate under ``batch/``; every ``histogram_period`` epochs: a histogram of each parameter
    (``weights/<name>``) and of its gradient (``gradients/<name>``). Tags group a metric's
    training and validation curves: ``accuracy/training``, ``accuracy/validation``.

    View with ``tensorboard --logdir <log_dir>``. Only the writing process
    (``estimator.is_writer``) writes.

    Args:
        log_dir: directory of the event files (created if missing).
        batch_period: batches between batch-level scalars (None: epoch-level only).
        metrics: metrics to write; default: the estimator's training and validation metrics.
        histogram_period: epochs between weight/gradient histograms (None: none).
        priority: 0; runs after validation (-1000), so validation metrics are fresh.

    Example::

        est.fit(train, val, epochs=10,
                event_handlers=[TensorBoardHandler('runs/exp1', histogram_period=5)])
    """

    batch_period = PeriodFilter('batch_end')

    def __init__(self, log_dir, batch_period=None, metrics=None, histogram_period=None,
                 priority=0):
        self.log_dir = log_dir
        self.batch_period = batch_period
        self.histogram_period = check_period(histogram_period, 'histogram_period',
                                             'TensorBoardHandler')
        self.metrics = check_metric_list(metrics, 'TensorBoardHandler')
        self.priority = priority
        self.writer = None

    def _metrics(self, estimator):
        if self.metrics is not None:
            return [(m, True) for m in self.metrics]
        fresh_val = estimator.validated_this_epoch
        return [(m, True) for m in estimator.train_metrics] + \
            [(m, fresh_val) for m in estimator.val_metrics]

    def _scalars(self, estimator, pairs, step, prefix=''):
        # every rank reads (a collective in a distributed run); the writer writes
        values = estimator.metric_values([m for m, fresh in pairs if fresh])
        if self.writer is None:
            return
        for name, value in values.items():
            value = float(value)
            if not math.isnan(value):
                self.writer.add_scalar(_tag(name, prefix), value, step)

    def train_begin(self, estimator, *args, **kwargs):
        if not estimator.is_writer:
            return
        try:
            from tensorboardX import SummaryWriter
        except ImportError as err:   # a declared dependency, but be clear if it is missing
            raise ImportError('TensorBoardHandler needs tensorboardX: pip install tensorboardX'
                              ) from err
        if self.writer is not None:
            self.writer.close()
        self.writer = SummaryWriter(logdir=self.log_dir)

    def batch_end(self, estimator, *args, **kwargs):
        step = estimator.progress.batches
        train = [(m, True) for m in (self.metrics if self.metrics is not None
                                     else estimator.train_metrics)]
        self._scalars(estimator, train, step, 'batch/')
        if self.writer is not None:
            self.writer.add_scalar('batch/learning_rate', estimator.trainer.learning_rate,
                                   step)

    def epoch_end(self, estimator, *args, **kwargs):
        step = estimator.progress.epoch
        self._scalars(estimator, self._metrics(estimator), step)
        if self.writer is None:
            return
        self.writer.add_scalar('learning_rate', estimator.trainer.learning_rate, step)
        if self.histogram_period is not None and \
                Events.EPOCH_END(every=self.histogram_period)(estimator):
            for name, p in estimator.net.collect_params().items():
                try:
                    data = p.data(p.list_ctx()[0])
                except RuntimeError:
                    continue
                self.writer.add_histogram(f'weights/{name}', data.asnumpy(), step)
                if p.grad_req != 'null':
                    grad = p.grad(p.list_ctx()[0])
                    self.writer.add_histogram(f'gradients/{name}', grad.asnumpy(), step)
        self.writer.flush()

    def train_end(self, estimator, *args, **kwargs):
        if self.writer is not None:
            self.writer.close()
            self.writer = None
