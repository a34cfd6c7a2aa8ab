"""EarlyStoppingHandler: stop when a monitored metric stops improving."""
import numbers

from .._events import EpochEnd, TrainBegin, TrainEnd
from ._counters import GluonCounters
from ._monitor import Monitor

__all__ = ['EarlyStoppingHandler']


class EarlyStoppingHandler(GluonCounters, TrainBegin, EpochEnd, TrainEnd):
    """Stops training when ``monitor`` has not improved for ``patience`` epochs.

    The monitor is checked at each epoch end; a validation metric is only checked in
    epochs where validation ran. Its state (best value, wait count, best weights) goes
    into checkpoints, so a resumed run stops exactly where the uninterrupted one would.

    Args:
        monitor: one of ``estimator.train_metrics`` / ``estimator.val_metrics``.
        min_delta: the smallest change that counts as an improvement.
        patience: epochs without improvement to wait before stopping (0: stop at the
            first epoch without improvement).
        mode: 'min', 'max' or 'auto' (from the metric: accuracy/f1/mcc... -> max,
            loss/error/mse/perplexity... -> min; an error if it cannot tell).
        baseline: a value the monitor must beat; until it does, epochs count as not
            improving.
        restore_best: at train end, load the weights of the best epoch back into the
            network (Keras' ``restore_best_weights``); not when training ends by an
            exception (Ctrl+C): the network then keeps the weights the interrupted run had,
            which its interrupt checkpoint resumes from.

    Example::

        stop = EarlyStoppingHandler(monitor=est.val_metrics[0], patience=3,
                                    restore_best=True)
        est.fit(train, val, epochs=100, event_handlers=[stop])
    """

    def __init__(self, monitor, min_delta=0, patience=0, mode='auto', baseline=None,
                 restore_best=False):
        if isinstance(patience, bool) or not isinstance(patience, numbers.Integral) or \
                patience < 0:
            raise ValueError('EarlyStoppingHandler: patience must be a non-negative integer, '
                             f'got {patience!r}')
        self._monitor = Monitor(monitor, mode, min_delta, baseline, 'EarlyStoppingHandler')
        self.monitor = monitor
        self.min_delta = min_delta
        self.patience = int(patience)
        self.mode = self._monitor.mode
        self.baseline = baseline
        self.restore_best = bool(restore_best)
        self._reset()

    def _reset(self):
        self._monitor.reset()
        self.wait = 0
        self.stopped_epoch = None
        self.best_epoch = None
        self.best_weights = None
        self.stop_training = False

    @property
    def best(self):
        """The best monitored value so far."""
        return self._monitor.best

    def train_begin(self, estimator, *args, **kwargs):
        self._bind_progress(estimator)
        self._reset()

    def epoch_end(self, estimator, *args, **kwargs):
        current = self._monitor.epoch_value(estimator, 'EarlyStoppingHandler')
        if current is None:
            return self.stop_training
        value = current[1]
        epoch = estimator.progress.epoch
        if self._monitor.is_improvement(value):
            self._monitor.best = value
            self.best_epoch = epoch
            self.wait = 0
            if self.restore_best:
                self.best_weights = {k: p.data(p.list_ctx()[0]).asnumpy()
                                     for k, p in estimator.net.collect_params().items()}
        else:
            self.wait += 1
            if self.wait >= self.patience:
                self.stopped_epoch = epoch
                self.stop_training = True
        return self.stop_training

    def train_end(self, estimator, *args, **kwargs):
        name = self._monitor.metric.name
        if self.stopped_epoch is not None:
            estimator.log('[Epoch %d] EarlyStoppingHandler: early stopping due to %s not '
                          'improving', self.stopped_epoch, name)
        if not self.restore_best or self.best_weights is None:
            return
        if estimator.exception is not None:
            estimator.log('EarlyStoppingHandler: training stopped by %s; the network keeps '
                          'its last weights (the best, of epoch %d, are not restored)',
                          type(estimator.exception).__name__, self.best_epoch)
            return
        for k, p in estimator.net.collect_params().items():
            if k in self.best_weights:
                p.set_data(self.best_weights[k])
        estimator.log('EarlyStoppingHandler: restored the weights of epoch %d (best %s: '
                      '%.4f)', self.best_epoch, name, self.best)

    def state_dict(self):
        return {'monitor': self._monitor.state_dict(), 'wait': self.wait,
                'stopped_epoch': self.stopped_epoch, 'best_epoch': self.best_epoch,
                'stop_training': self.stop_training, 'best_weights': self.best_weights}

    def load_state_dict(self, state):
        self._monitor.load_state_dict(state['monitor'])
        self.wait = int(state['wait'])
        self.stopped_epoch = state['stopped_epoch']
        self.best_epoch = state['best_epoch']
        self.stop_training = bool(state['stop_training'])
        self.best_weights = state['best_weights']
