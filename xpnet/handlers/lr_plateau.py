"""ReduceLROnPlateauHandler: lower the learning rate when a metric stops improving."""
import numbers

from .._events import EpochEnd, TrainBegin
from ._lr import change_learning_rate
from ._monitor import Monitor

__all__ = ['ReduceLROnPlateauHandler']


class ReduceLROnPlateauHandler(TrainBegin, EpochEnd):
    """Multiplies the learning rate by ``factor`` when ``monitor`` has not improved for
    ``patience`` epochs (Keras' ``ReduceLROnPlateau``).

    At each epoch end (for a validation metric: each epoch where validation ran) the
    monitor is compared with the best value so far; an improvement (by more than
    ``min_delta``) resets the wait count, otherwise it grows, and at ``patience`` the rate is
    lowered to ``max(lr * factor, min_lr)`` (if it is above ``min_lr``), the wait count is
    reset and ``cooldown`` epochs follow in which nothing is counted.

    The learning-rate rule (shared with :class:`LRWarmupHandler`): without a Trainer
    ``lr_scheduler`` the handler sets the Trainer's rate; with one, a reduction multiplies
    the rest of the schedule by ``factor`` (the scheduler keeps stepping, from a lower
    level), so the two never overwrite each other. While an ``LRWarmupHandler`` is still
    warming up, reductions wait for it to finish. The wait count, cooldown and best value
    go into checkpoints; the rate itself is in the trainer's state.

    Args:
        monitor: one of ``estimator.train_metrics`` / ``estimator.val_metrics``.
        factor: the multiplier, 0 < factor < 1.
        patience: epochs without improvement before a reduction.
        mode: 'min', 'max' or 'auto' (from the metric, as in EarlyStoppingHandler).
        min_delta: the smallest change that counts as an improvement.
        cooldown: epochs to wait after a reduction before counting again.
        min_lr: the rate is never lowered below this.

    Example::

        plateau = ReduceLROnPlateauHandler(est.val_metrics[1], factor=0.5, patience=3)
        est.fit(train, val, epochs=50, event_handlers=[plateau])
    """

    def __init__(self, monitor, factor=0.1, patience=10, mode='auto', min_delta=1e-4,
                 cooldown=0, min_lr=0):
        owner = 'ReduceLROnPlateauHandler'
        if isinstance(factor, bool) or not isinstance(factor, numbers.Real) or \
                not 0 < factor < 1:
            raise ValueError(f'{owner}: factor must be between 0 and 1 (exclusive), got '
                             f'{factor!r}')
        for name, value in (('patience', patience), ('cooldown', cooldown)):
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
                raise ValueError(f'{owner}: {name} must be a non-negative integer, got '
                                 f'{value!r}')
        if isinstance(min_lr, bool) or not isinstance(min_lr, numbers.Real) or min_lr < 0:
            raise ValueError(f'{owner}: min_lr must be a non-negative number, got {min_lr!r}')
        self._monitor = Monitor(monitor, mode, min_delta, None, owner)
        self.monitor = monitor
        self.factor = float(factor)
        self.patience = int(patience)
        self.mode = self._monitor.mode
        self.min_delta = min_delta
        self.cooldown = int(cooldown)
        self.min_lr = float(min_lr)
        self._reset()

    def _reset(self):
        self._monitor.reset()
        self.wait = 0
        self.cooldown_counter = 0
        self.reductions = []          # (epoch, old lr, new lr) of this run

    @property
    def best(self):
        return self._monitor.best

    def train_begin(self, estimator, *args, **kwargs):
        self._reset()

    def epoch_end(self, estimator, *args, **kwargs):
        current = self._monitor.epoch_value(estimator, 'ReduceLROnPlateauHandler')
        if current is None:
            return False
        name, value = current
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.wait = 0
        if self._monitor.is_improvement(value):
            self._monitor.best = value
            self.wait = 0
        elif self.cooldown_counter == 0:
            self.wait += 1
            if self.wait >= self.patience and not _warming_up(estimator):
                self._reduce(estimator, name)
        return False

    def _reduce(self, estimator, name):
        old = estimator.trainer.learning_rate
        if old > self.min_lr:
            new = max(old * self.factor, self.min_lr)
            change_learning_rate(estimator.trainer, old, new, 'ReduceLROnPlateauHandler')
            epoch = estimator.progress.epoch
            self.reductions.append((epoch, old, new))
            estimator.log('[Epoch %d] ReduceLROnPlateauHandler: %s did not improve for %d '
                          'epochs; learning rate %.6g -> %.6g', epoch, name, self.wait, old,
                          new)
            self.cooldown_counter = self.cooldown
            self.wait = 0

    def state_dict(self):
        return {'monitor': self._monitor.state_dict(), 'wait': self.wait,
                'cooldown_counter': self.cooldown_counter,
                'reductions': [list(r) for r in self.reductions]}

    def load_state_dict(self, state):
        self._monitor.load_state_dict(state['monitor'])
        self.wait = int(state['wait'])
        self.cooldown_counter = int(state['cooldown_counter'])
        self.reductions = [tuple(r) for r in state.get('reductions', [])]


def _warming_up(estimator):
    from .lr_warmup import LRWarmupHandler
    return any(isinstance(h, LRWarmupHandler) and h.warming_up for h in estimator.event_handlers)
