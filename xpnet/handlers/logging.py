"""LoggingHandler: Gluon's training log lines, and a tqdm progress bar on terminals."""
import math
import numbers
import sys
import time

from .._events import BatchBegin, BatchEnd, EpochBegin, EpochEnd, TrainBegin, TrainEnd
from ._counters import GluonCounters
from ._filters import Events
from .metric import check_metric_list

__all__ = ['LoggingHandler']


def _format_metrics(estimator, metrics, skip_nan=False):
    parts = []
    for m in metrics:
        names, values = estimator.metric_value(m)
        if not isinstance(names, (list, tuple)):
            names, values = [names], [values]
        for name, value in zip(names, values):
            if skip_nan and isinstance(value, float) and math.isnan(value):
                continue
            parts.append('%s: %.4f' % (name, value))
    return ', '.join(parts)


def _short_name(metric):
    from .. import metric as _metric
    if isinstance(metric, _metric.Loss):
        return 'loss'
    name = metric.name
    for prefix in ('training ', 'validation '):
        if name.startswith(prefix):
            return name[len(prefix):]
    return name


class LoggingHandler(GluonCounters, TrainBegin, TrainEnd, EpochBegin, EpochEnd, BatchBegin,
                     BatchEnd):
    """Logs the hyper-parameters at train begin, the metrics every ``log_interval``
    batches or at each epoch end, and the totals at train end, in Gluon's formats::

        Training begin: using optimizer SGD with current learning rate 0.1000
        Train for 2 epochs.
        [Epoch 0] Begin, current learning rate: 0.1000
        [Epoch 0][Batch 9][Samples 320] time/interval: 0.031s training accuracy: 0.5312, ...
        [Epoch 0] Finished in 0.093s, training accuracy: 0.6250, training ...loss: 0.9876
        Train finished using total 1s with 2 epochs. training accuracy: 0.7500, ...

    On a terminal it also shows a tqdm progress bar per epoch (batches done/total when
    the loader has a length, samples/s, the current loss and metrics), which disappears
    when the epoch's log line is written.

    In a distributed run only rank 0 logs and shows the bar. The metrics of the log lines
    are those of every rank's data (``estimator.metric_value``); the bar, refreshed at
    times that differ by rank, shows rank 0's own running values and samples/s. An ``evaluate`` outside ``fit`` logs
    ``Validation finished in ...`` (no epoch number: no epoch is running).

    Args:
        log_interval: ``'epoch'``, or an integer k: also log after every k batches of
            an epoch (batch index k-1, 2k-1, ...: ``Events.BATCH_END(every=k,
            within_epoch=True)``).
        metrics: the metrics to log; default: the estimator's training metrics (during
            ``evaluate``, its validation metrics), plus the validation metrics at train end.
            They must be metrics the estimator updates (``ValueError`` otherwise).
        priority: runs last (inf), after every metric is updated.
        progress_bar: None (default): show the bar when stdout is a terminal; True: always;
            False: never (plain log lines only).
    """

    def __init__(self, log_interval='epoch', metrics=None, priority=math.inf,
                 progress_bar=None):
        if progress_bar not in (None, True, False):
            raise ValueError('LoggingHandler: progress_bar must be None (auto), True or '
                             f'False, got {progress_bar!r}')
        self.log_interval = log_interval
        self.metrics = check_metric_list(metrics, 'LoggingHandler')
        self.priority = priority
        self.progress_bar = progress_bar
        self._bar = None
        self._use_bar = False
        self._train_start = self._epoch_start = self._interval_start = 0.0
        self._last_postfix = 0.0

    @property
    def log_interval(self):
        return self._log_interval

    @log_interval.setter
    def log_interval(self, value):
        if value != 'epoch' and (isinstance(value, bool) or
                                 not isinstance(value, numbers.Integral) or value <= 0):
            raise ValueError("LoggingHandler: log_interval must be 'epoch' or a positive "
                             f'integer, got {value!r}')
        self._log_interval = value
        self._log_filter = None if value == 'epoch' else \
            Events.BATCH_END(every=int(value), within_epoch=True)

    # ---- helpers --------------------------------------------------------------------------
    def _metrics(self, estimator):
        if self.metrics is not None:
            return self.metrics
        return estimator.val_metrics if estimator.evaluating else estimator.train_metrics

    @staticmethod
    def _log(estimator, msg):
        estimator.log(msg)

    def _open_bar(self, estimator):
        from tqdm import tqdm
        try:
            total = len(estimator.train_data)
        except TypeError:
            total = None
        progress = estimator.progress
        self._bar = tqdm(total=total, initial=progress.epoch_batches,
                         desc=f'Epoch {progress.epoch}', unit='batch', file=sys.stdout,
                         leave=False, dynamic_ncols=True, mininterval=0.1)
        estimator.progress_bar = self._bar
        self._last_postfix = 0.0

    def _close_bar(self, estimator):
        if self._bar is not None:
            self._bar.close()
            self._bar = None
            estimator.progress_bar = None

    def _update_bar(self, estimator):
        now = time.perf_counter()
        bar = self._bar
        if now - self._last_postfix >= 0.2 or bar.n + 1 == bar.total:
            self._last_postfix = now
            elapsed = max(now - self._epoch_start, 1e-9)
            parts = ['%.0f samples/s' % (estimator.progress.epoch_samples / elapsed)]
            for m in self._metrics(estimator):
                # refreshed by time, which differs by rank: this process's own value
                value = estimator.metric_value(m, local=True)[1]
                if isinstance(value, numbers.Real):
                    parts.append('%s=%.4f' % (_short_name(m), value))
            bar.set_postfix_str(', '.join(parts), refresh=False)
        bar.update(1)

    # ---- events ---------------------------------------------------------------------------
    def train_begin(self, estimator, *args, **kwargs):
        self._bind_progress(estimator)
        self._train_start = time.time()
        trainer = estimator.trainer
        self._log(estimator, 'Training begin: using optimizer %s with current learning '
                  'rate %.4f ' % (type(trainer.optimizer).__name__, trainer.learning_rate))
        if estimator.max_epoch is not None:
            self._log(estimator, 'Train for %d epochs.' % estimator.max_epoch)
        else:
            self._log(estimator, 'Train for %d batches.' % estimator.max_batch)
        use_bar = self.progress_bar
        if use_bar is None:
            isatty = getattr(sys.stdout, 'isatty', None)
            use_bar = bool(isatty and isatty())
        self._use_bar = use_bar and estimator.is_writer

    def train_end(self, estimator, *args, **kwargs):
        self._close_bar(estimator)
        progress = estimator.progress
        train_time = time.time() - self._train_start
        if estimator.exception is not None:
            self._log(estimator, 'Train stopped by %s after %ds, %d epochs and %d batches.'
                      % (type(estimator.exception).__name__, train_time, progress.epochs_done,
                         progress.batches))
            return
        msg = 'Train finished using total %ds with %d epochs. ' % (train_time,
                                                                    progress.epochs_done)
        if self.metrics is not None:
            msg += _format_metrics(estimator, self.metrics)
        else:
            msg += ', '.join(s for s in (
                _format_metrics(estimator, estimator.train_metrics),
                _format_metrics(estimator, estimator.val_metrics, skip_nan=True)) if s)
        self._log(estimator, msg.rstrip(', '))

    def epoch_begin(self, estimator, *args, **kwargs):
        self._epoch_start = self._interval_start = time.perf_counter()
        if estimator.evaluating:
            self._log(estimator, 'Validation Begin')
            return
        self._log(estimator, '[Epoch %d] Begin, current learning rate: %.4f'
                  % (estimator.progress.epoch, estimator.trainer.learning_rate))
        if self._use_bar:
            self._open_bar(estimator)

    def epoch_end(self, estimator, *args, **kwargs):
        if not estimator.evaluating:
            self._close_bar(estimator)
        epoch_time = time.perf_counter() - self._epoch_start
        if estimator.training:
            msg = '[Epoch %d] Finished in %.3fs, ' % (estimator.progress.epoch, epoch_time)
        else:       # an evaluate() of its own: no epoch is running
            msg = 'Validation finished in %.3fs, ' % epoch_time
        metrics = _format_metrics(estimator, self._metrics(estimator))
        self._log(estimator, (msg + metrics).rstrip(', '))

    def batch_begin(self, estimator, *args, **kwargs):
        pass

    def batch_end(self, estimator, *args, **kwargs):
        evaluating = estimator.evaluating
        if self._bar is not None and not evaluating:
            self._update_bar(estimator)
        if self._log_filter is None or not self._log_filter(estimator):
            return
        progress = estimator.eval_progress if evaluating else estimator.progress
        now = time.perf_counter()
        epoch = '[Epoch %d]' % estimator.progress.epoch if estimator.training else ''
        msg = '%s[Batch %d][Samples %s] time/interval: %.3fs ' % (
            epoch, progress.epoch_batches - 1, progress.samples, now - self._interval_start)
        self._interval_start = now
        metrics = _format_metrics(estimator, self._metrics(estimator))
        self._log(estimator, (msg + metrics).rstrip(', '))
