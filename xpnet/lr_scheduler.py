"""Learning-rate schedules: a function of the number of updates, as in MXNet 1.9.

A scheduler is called by the optimizer with ``num_update`` (the largest number of updates
applied to any weight; 1 at the first step) and returns the learning rate. The schedulers
keep MXNet's *stateful* behaviour: ``FactorScheduler`` and ``MultiFactorScheduler`` lower
``base_lr`` as ``num_update`` passes their steps and never raise it again, and
``PolyScheduler`` / ``CosineScheduler`` keep the last value once ``max_update`` is passed.
``state_dict()`` / ``load_state_dict()`` capture that state as JSON-able data, so a resumed
run continues identically.

Example::

    sched = FactorScheduler(step=100, factor=0.5, base_lr=0.1, warmup_steps=10)
    trainer = xpnet.Trainer(net.collect_params(), 'sgd', {'lr_scheduler': sched})
"""
import logging
from math import cos, pi

__all__ = ['LRScheduler', 'FactorScheduler', 'MultiFactorScheduler', 'PolyScheduler',
           'CosineScheduler', 'from_state_dict']

_log = logging.getLogger(__name__)
_JSON_SCALARS = (bool, int, float, str, type(None))


def _json_able(value):
    if isinstance(value, _JSON_SCALARS):
        return True
    if isinstance(value, (list, tuple)):
        return all(isinstance(v, _JSON_SCALARS) for v in value)
    return False


class LRScheduler:
    """Base class: a learning rate as a function of the number of updates.

    Args:
        base_lr: the initial learning rate.
        warmup_steps: number of updates spent warming up before the schedule starts.
        warmup_begin_lr: the learning rate at the start of the warmup.
        warmup_mode: 'linear' (equal increments up to ``base_lr``) or 'constant'
            (``warmup_begin_lr`` throughout the warmup).
    """

    def __init__(self, base_lr=0.01, warmup_steps=0, warmup_begin_lr=0, warmup_mode='linear'):
        if not isinstance(warmup_steps, int):
            raise TypeError(f'warmup_steps must be an int, got {warmup_steps!r}')
        if warmup_steps < 0:
            raise ValueError(f'warmup_steps must be >= 0, got {warmup_steps}')
        if warmup_begin_lr > base_lr:
            raise ValueError(f'base_lr ({base_lr}) must be >= warmup_begin_lr '
                             f'({warmup_begin_lr})')
        if warmup_mode not in ('linear', 'constant'):
            raise ValueError(f"warmup_mode must be 'linear' or 'constant', got {warmup_mode!r}")
        self.base_lr = base_lr
        self.warmup_steps = warmup_steps
        self.warmup_final_lr = base_lr
        self.warmup_begin_lr = warmup_begin_lr
        self.warmup_mode = warmup_mode

    def get_warmup_lr(self, num_update):
        """The learning rate at update ``num_update`` (< ``warmup_steps``) of the warmup."""
        if num_update >= self.warmup_steps:
            raise ValueError(f'get_warmup_lr: num_update {num_update} is past the warmup '
                             f'({self.warmup_steps} steps)')
        if self.warmup_mode == 'linear':
            increase = (self.warmup_final_lr - self.warmup_begin_lr) \
                * float(num_update) / float(self.warmup_steps)
            return self.warmup_begin_lr + increase
        return self.warmup_begin_lr

    def __call__(self, num_update):
        """The learning rate for ``num_update`` (the largest update count of any weight)."""
        raise NotImplementedError(f'{type(self).__name__} must implement __call__')

    # ---- checkpointing ------------------------------------------------------------------
    def state_dict(self):
        """The schedule's configuration and progress as a JSON-serializable dict."""
        state = {k: (list(v) if isinstance(v, tuple) else v)
                 for k, v in vars(self).items() if _json_able(v)}
        state['type'] = type(self).__name__
        return state

    def load_state_dict(self, state):
        """Restore what :meth:`state_dict` returned (the types must match)."""
        kind = state.get('type', type(self).__name__)
        if kind != type(self).__name__:
            raise ValueError(f'load_state_dict: the state is of a {kind}, not a '
                             f'{type(self).__name__}')
        for k, v in state.items():
            if k != 'type':
                setattr(self, k, v)

    def __repr__(self):
        return f'{type(self).__name__}(base_lr={self.base_lr})'


class FactorScheduler(LRScheduler):
    """Multiply the learning rate by ``factor`` every ``step`` updates.

    ``base_lr * factor ** floor((num_update - 1) / step)`` for increasing ``num_update``, never
    below ``stop_factor_lr``. Stateful as in MXNet: the decayed ``base_lr`` is kept.

    Args:
        step: number of updates between two decays (>= 1).
        factor: the decay factor (<= 1).
        stop_factor_lr: the learning rate never goes below this value.
        base_lr, warmup_steps, warmup_begin_lr, warmup_mode: see :class:`LRScheduler`.
    """

    def __init__(self, step, factor=1, stop_factor_lr=1e-8, base_lr=0.01, warmup_steps=0,
                 warmup_begin_lr=0, warmup_mode='linear'):
        super().__init__(base_lr, warmup_steps, warmup_begin_lr, warmup_mode)
        if step < 1:
            raise ValueError(f'FactorScheduler: step must be >= 1, got {step}')
        if factor > 1.0:
            raise ValueError(f'FactorScheduler: factor must be <= 1 to reduce the learning '
                             f'rate, got {factor}')
        self.step = step
        self.factor = factor
        self.stop_factor_lr = stop_factor_lr
        self.count = 0

    def __call__(self, num_update):
        if num_update < self.warmup_steps:
            return self.get_warmup_lr(num_update)
        # A loop, not a test: a resumed run may jump over several steps at once.
        while num_update > self.count + self.step:
            self.count += self.step
            self.base_lr *= self.factor
            if self.base_lr < self.stop_factor_lr:
                self.base_lr = self.stop_factor_lr
                _log.info('Update[%d]: now learning rate arrived at %0.5e, will not change '
                          'in the future', num_update, self.base_lr)
            else:
                _log.info('Update[%d]: Change learning rate to %0.5e', num_update,
                          self.base_lr)
        return self.base_lr


class MultiFactorScheduler(LRScheduler):
    """Multiply the learning rate by ``factor`` each time ``num_update`` passes a step.

    With ``step[k] < num_update <= step[k+1]`` the rate is ``base_lr * factor ** (k+1)``.

    Args:
        step: increasing list of update counts (each >= 1).
        factor: the decay factor (<= 1).
        base_lr, warmup_steps, warmup_begin_lr, warmup_mode: see :class:`LRScheduler`.
    """

    def __init__(self, step, factor=1, base_lr=0.01, warmup_steps=0, warmup_begin_lr=0,
                 warmup_mode='linear'):
        super().__init__(base_lr, warmup_steps, warmup_begin_lr, warmup_mode)
        if not isinstance(step, (list, tuple)) or len(step) < 1:
            raise ValueError(f'MultiFactorScheduler: step must be a non-empty list of ints, '
                             f'got {step!r}')
        for i, s in enumerate(step):
            if i and s <= step[i - 1]:
                raise ValueError(f'MultiFactorScheduler: step must be increasing, got {step}')
            if s < 1:
                raise ValueError(f'MultiFactorScheduler: every step must be >= 1, got {step}')
        if factor > 1.0:
            raise ValueError(f'MultiFactorScheduler: factor must be <= 1, got {factor}')
        self.step = list(step)
        self.cur_step_ind = 0
        self.factor = factor
        self.count = 0

    def __call__(self, num_update):
        if num_update < self.warmup_steps:
            return self.get_warmup_lr(num_update)
        while self.cur_step_ind <= len(self.step) - 1:
            if num_update > self.step[self.cur_step_ind]:
                self.count = self.step[self.cur_step_ind]
                self.cur_step_ind += 1
                self.base_lr *= self.factor
                _log.info('Update[%d]: Change learning rate to %0.5e', num_update,
                          self.base_lr)
            else:
                return self.base_lr
        return self.base_lr


class _DecayToFinal(LRScheduler):
    """After the warmup, ``final_lr + (base_lr - final_lr) * shape(t / T)`` with
    ``t = num_update - warmup_steps`` and ``T = max_update - warmup_steps``; the last value
    is kept after ``max_update``. Subclasses define ``_shape`` (1 at 0, 0 at 1)."""

    def __init__(self, max_update, base_lr, final_lr, warmup_steps, warmup_begin_lr,
                 warmup_mode):
        super().__init__(base_lr, warmup_steps, warmup_begin_lr, warmup_mode)
        name = type(self).__name__
        if not isinstance(max_update, int):
            raise TypeError(f'{name}: max_update must be an int, got {max_update!r}')
        if max_update < 1:
            raise ValueError(f'{name}: max_update must be >= 1, got {max_update}')
        self.base_lr_orig = self.base_lr
        self.max_update = max_update
        self.final_lr = final_lr
        self.max_steps = self.max_update - self.warmup_steps

    def __call__(self, num_update):
        if num_update < self.warmup_steps:
            return self.get_warmup_lr(num_update)
        if num_update <= self.max_update:
            fraction = float(num_update - self.warmup_steps) / float(self.max_steps)
            self.base_lr = self.final_lr + (self.base_lr_orig - self.final_lr) * \
                self._shape(fraction)
        return self.base_lr

    def _shape(self, fraction):
        raise NotImplementedError


class PolyScheduler(_DecayToFinal):
    """Polynomial decay to ``final_lr`` at ``max_update``: ``shape(f) = (1 - f) ** pwr``
    (see ``_DecayToFinal`` for ``f``).

    Args:
        max_update: the update count at which the decay reaches ``final_lr`` (int >= 1).
        base_lr: the starting learning rate.
        pwr: the power of the decay.
        final_lr: the learning rate reached at ``max_update``.
        warmup_steps, warmup_begin_lr, warmup_mode: see :class:`LRScheduler`.
    """

    def __init__(self, max_update, base_lr=0.01, pwr=2, final_lr=0, warmup_steps=0,
                 warmup_begin_lr=0, warmup_mode='linear'):
        super().__init__(max_update, base_lr, final_lr, warmup_steps, warmup_begin_lr,
                         warmup_mode)
        self.power = pwr

    def _shape(self, fraction):
        return pow(1 - fraction, self.power)


class CosineScheduler(_DecayToFinal):
    """Cosine decay to ``final_lr`` at ``max_update``: ``shape(f) = (1 + cos(pi f)) / 2``.

    Args:
        max_update: the update count at which the decay reaches ``final_lr`` (int >= 1).
        base_lr: the starting learning rate.
        final_lr: the learning rate reached at ``max_update``.
        warmup_steps, warmup_begin_lr, warmup_mode: see :class:`LRScheduler`.
    """

    def __init__(self, max_update, base_lr=0.01, final_lr=0, warmup_steps=0,
                 warmup_begin_lr=0, warmup_mode='linear'):
        super().__init__(max_update, base_lr, final_lr, warmup_steps, warmup_begin_lr,
                         warmup_mode)

    def _shape(self, fraction):
        return (1 + cos(pi * fraction)) / 2


_SCHEDULERS = {cls.__name__: cls for cls in
               (FactorScheduler, MultiFactorScheduler, PolyScheduler, CosineScheduler)}


def from_state_dict(state):
    """Rebuild a scheduler from :meth:`LRScheduler.state_dict` (the built-in types, or any
    subclass of LRScheduler whose class has been imported)."""
    kind = state.get('type')
    cls = _SCHEDULERS.get(kind)
    if cls is None:
        stack = list(LRScheduler.__subclasses__())
        while stack and cls is None:
            sub = stack.pop()
            if sub.__name__ == kind:
                cls = sub
            stack.extend(sub.__subclasses__())
    if cls is None:
        raise ValueError(f'unknown learning-rate scheduler type {kind!r}')
    sched = cls.__new__(cls)
    sched.load_state_dict(state)
    return sched
