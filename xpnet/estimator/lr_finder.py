"""The learning-rate range test behind ``Estimator.lr_find`` (Smith 2017; fastai's
``lr_find``): train a few batches with an exponentially growing rate, record the smoothed
loss, suggest a rate, and put everything back as it was."""
import collections
import copy
import math
import numbers
import warnings

import numpy as np

from .. import distributed as dist
from .._events import batch_size_of
from . import _checks
from ._state import capture_random_state, restore_random_state

__all__ = ['LRFinderResult', 'lr_find']

LRFinderResult = collections.namedtuple('LRFinderResult', ['lrs', 'losses', 'suggested_lr'])
LRFinderResult.__doc__ = """What ``Estimator.lr_find`` found.

Attributes:
    lrs: the learning rate of each batch of the sweep.
    losses: the loss after each batch, smoothed (exponential moving average, beta 0.98,
        bias-corrected).
    suggested_lr: a tenth of the rate with the lowest smoothed loss (fastai's rule), or
        None when the loss did not fall.
"""

_BETA = 0.98            # fastai's smoothing
_DIVERGED = 4.0         # stop once the smoothed loss exceeds this multiple of its minimum


class _Snapshot:
    """What a sweep changes, copied so that it can be put back: the parameters and their
    gradients, the trainer's state (optimizer states, rate, scheduler), the loader's
    position and the random streams."""

    def __init__(self, estimator, train_data):
        self.estimator, self.train_data = estimator, train_data
        self.params = {}
        for name, p in estimator.net.collect_params().items():
            try:
                datas = p.list_data()
            except RuntimeError:     # deferred: the sweep's first batch initializes it
                continue
            grads = [d.grad.asnumpy().copy() if d.grad is not None else None for d in datas]
            self.params[name] = (p, [d.asnumpy().copy() for d in datas], grads)
        trainer = estimator.trainer
        self.trainer_state = copy.deepcopy(trainer.state_dict())
        self.scheduler = trainer.optimizer.lr_scheduler
        self.loader = copy.deepcopy(train_data.state_dict()) \
            if callable(getattr(train_data, 'state_dict', None)) else None
        self.random = capture_random_state()

    def restore(self):
        from ..backend import to_device
        for p, datas, grads in self.params.values():
            for d, value, grad in zip(p.list_data(), datas, grads):
                with d.context.use():
                    d.data[...] = to_device(value, d.context, dtype=d.dtype)
                    if grad is not None and d.grad is not None:
                        d.grad.data[...] = to_device(grad, d.context, dtype=d.grad.dtype)
        trainer = self.estimator.trainer
        trainer.optimizer.lr_scheduler = None
        trainer.load_state_dict(self.trainer_state)
        trainer.optimizer.lr_scheduler = self.scheduler     # the user's object, untouched
        if self.loader is not None:
            self.train_data.load_state_dict(self.loader)
        restore_random_state(self.random)


def _check_arguments(start_lr, end_lr, num_batches):
    for name, value in (('start_lr', start_lr), ('end_lr', end_lr)):
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value > 0:
            raise ValueError(f'lr_find: {name} must be a positive number, got {value!r}')
    if not start_lr < end_lr:
        raise ValueError(f'lr_find: start_lr ({start_lr}) must be below end_lr ({end_lr})')
    if isinstance(num_batches, bool) or not isinstance(num_batches, numbers.Integral) or \
            num_batches < 2:
        raise ValueError(f'lr_find: num_batches must be an integer >= 2, got {num_batches!r}')


def _batches(train_data, count):
    """``count`` batches of ``train_data``, starting it again when it runs out."""
    done = 0
    while done < count:
        before = done
        for batch in train_data:
            yield batch
            done += 1
            if done == count:
                return
        if done == before:
            raise ValueError('lr_find: train_data yielded no batches')


def _sweep(estimator, train_data, start_lr, end_lr, num_batches):
    trainer = estimator.trainer
    trainer.optimizer.lr_scheduler = None       # the sweep sets every rate itself
    lrs, losses = [], []
    average, lowest = 0.0, math.inf
    for i, batch in enumerate(_batches(train_data, num_batches)):
        lr = start_lr * (end_lr / start_lr) ** (i / (num_batches - 1))
        trainer.set_learning_rate(lr)
        _, _, _, loss = estimator.fit_batch(batch)
        samples = batch_size_of(loss)
        total = np.array([sum(float(l.sum().item()) for l in loss), samples], np.float64)
        if dist.size() > 1:     # every rank judges the same loss: the sweep ends together
            dist.allreduce(total)
        value = float(total[0] / total[1])
        if not math.isfinite(value):
            break
        trainer.step(samples)
        average = _BETA * average + (1 - _BETA) * value
        smoothed = average / (1 - _BETA ** (i + 1))
        lrs.append(lr)
        losses.append(smoothed)
        if smoothed > _DIVERGED * lowest:
            break
        lowest = min(lowest, smoothed)
    return lrs, losses


def suggest_lr(lrs, losses):
    """A tenth of the rate with the lowest smoothed loss (fastai's "minimum / 10"; the
    steepest slope is the other common rule, but on a short, noisy sweep its pick jumps
    about). The first tenth of the sweep is left out: its average still follows the first
    few batches. None when the lowest loss is among the first three points judged (the
    loss never fell)."""
    start = len(losses) // 10
    if len(losses) - start < 3:
        return None
    best = start + int(np.argmin(losses[start:]))
    if best - start < 2:
        return None
    return float(lrs[best]) / 10


def lr_find(estimator, train_data, start_lr=1e-7, end_lr=10, num_batches=100):
    """See :meth:`Estimator.lr_find`."""
    _checks.check_loader(train_data, 'train_data')
    _check_arguments(start_lr, end_lr, num_batches)
    snapshot = _Snapshot(estimator, train_data)
    try:
        lrs, losses = _sweep(estimator, train_data, float(start_lr), float(end_lr),
                             int(num_batches))
    finally:
        snapshot.restore()
    suggested = suggest_lr(lrs, losses)
    if suggested is None:
        warnings.warn(f'lr_find: the loss did not fall over {len(lrs)} batches before it '
                      'diverged or ended; no rate is suggested (try a lower start_lr or more '
                      'batches)', RuntimeWarning, stacklevel=3)
    return LRFinderResult(lrs, losses, suggested)
