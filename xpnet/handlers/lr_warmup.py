"""LRWarmupHandler: raise the learning rate over the first updates."""
import numbers

from .._events import BatchBegin, TrainBegin
from ._lr import has_scheduler

__all__ = ['LRWarmupHandler']


class LRWarmupHandler(TrainBegin, BatchBegin):
    """Warms the learning rate up from ``begin_lr`` to the Trainer's rate over the first
    ``warmup_steps`` updates, as MXNet's schedulers do (``warmup_mode`` 'linear' or
    'constant'): before update ``u < warmup_steps`` the rate is
    ``begin_lr + (lr - begin_lr) * u / warmup_steps`` (linear) or ``begin_lr`` (constant),
    from update ``warmup_steps`` on it is the Trainer's rate again. Updates are counted by
    the optimizer (``num_update``), so with gradient accumulation a step is an update.

    The learning-rate rule (shared with :class:`ReduceLROnPlateauHandler`): the handler
    owns the rate during the warmup and a plateau handler waits until it is done. A Trainer
    with an ``lr_scheduler`` is refused (``ValueError`` at train begin): give that scheduler
    ``warmup_steps``/``warmup_begin_lr`` instead, and the two never fight. The target rate
    and progress go into checkpoints.

    Args:
        warmup_steps: updates the warmup lasts.
        begin_lr: the rate of the first update.
        mode: 'linear' or 'constant'.

    Example::

        est.fit(train, val, epochs=30, event_handlers=[
            LRWarmupHandler(warmup_steps=500),
            ReduceLROnPlateauHandler(est.val_metrics[1], factor=0.5, patience=3)])
    """

    def __init__(self, warmup_steps, begin_lr=0.0, mode='linear'):
        if isinstance(warmup_steps, bool) or not isinstance(warmup_steps, numbers.Integral) \
                or warmup_steps < 1:
            raise ValueError('LRWarmupHandler: warmup_steps must be a positive integer, got '
                             f'{warmup_steps!r}')
        if isinstance(begin_lr, bool) or not isinstance(begin_lr, numbers.Real) or begin_lr < 0:
            raise ValueError('LRWarmupHandler: begin_lr must be a non-negative number, got '
                             f'{begin_lr!r}')
        if mode not in ('linear', 'constant'):
            raise ValueError(f"LRWarmupHandler: mode must be 'linear' or 'constant', got "
                             f'{mode!r}')
        self.warmup_steps = int(warmup_steps)
        self.begin_lr = float(begin_lr)
        self.mode = mode
        self.target_lr = None
        self.warming_up = False

    def train_begin(self, estimator, *args, **kwargs):
        if has_scheduler(estimator.trainer):
            raise ValueError(
                'LRWarmupHandler: the trainer has an lr_scheduler, which owns the learning '
                'rate; give the scheduler warmup_steps (and warmup_begin_lr) instead, e.g. '
                'FactorScheduler(..., warmup_steps=500)')
        self.target_lr = estimator.trainer.learning_rate
        if self.begin_lr > self.target_lr:
            raise ValueError(f'LRWarmupHandler: begin_lr ({self.begin_lr}) is above the '
                             f"trainer's learning rate ({self.target_lr})")
        self.warming_up = _num_update(estimator) < self.warmup_steps

    def batch_begin(self, estimator, *args, **kwargs):
        if not self.warming_up:
            return
        update = _num_update(estimator) + 1      # the update this batch leads to
        if update >= self.warmup_steps:
            lr = self.target_lr
            self.warming_up = False
        elif self.mode == 'linear':
            lr = self.begin_lr + (self.target_lr - self.begin_lr) * update / self.warmup_steps
        else:
            lr = self.begin_lr
        estimator.trainer.set_learning_rate(lr)

    def state_dict(self):
        return {'target_lr': self.target_lr, 'warming_up': self.warming_up}

    def load_state_dict(self, state):
        self.target_lr = state['target_lr']
        self.warming_up = bool(state['warming_up'])


def _num_update(estimator):
    return int(getattr(estimator.trainer.optimizer, 'num_update', 0))
