"""Large-batch optimizers of MXNet 1.9: LARS, LAMB and LBSGD (layer-wise learning rates)."""
import math

import numpy as np

from .base import Optimizer, register, _data, _zeros_like, _dense_grad, _scaled_grad
from .sgd import sgd_kernel

__all__ = ['LARS', 'LAMB', 'LBSGD']


def _norm(xp, a):
    """The L2 norm of an array as a Python float (a float32 accumulation, as MXNet's)."""
    a = a.astype(np.float32, copy=False)
    return float(xp.sqrt(xp.sum(a * a)))


@register
class LARS(Optimizer):
    """Layer-wise adaptive rate scaling (You et al. 2017), MXNet 1.9's rule: SGD with
    momentum where each parameter's learning rate is scaled by its trust ratio::

        lr_p = lr * eta * |w| / (|rescale_grad * g| + wd * |w| + eps)   (lr if a norm is 0)

    computed before the step (parameters named ``*gamma``, ``*beta`` or ``*bias`` in
    ``param_idx2name`` keep ``lr``). With ``momentum_correction`` the momentum is scaled by
    ``lr(t) / lr(t-1)`` when a scheduler changes the learning rate. (MXNet applies that
    correction only to the first four parameters of a step, its aggregation size; xpnet
    applies it to every parameter.) Only parameters named ``*_weight`` get weight decay
    when names are given.

    Args:
        momentum: the momentum factor.
        lazy_update: accepted (row-sparse gradients are used densified).
        eta: the trust coefficient.
        eps: added to the denominator.
        momentum_correction: see above.
        **kwargs: see :class:`Optimizer`.
    """
    _master_first = False          # multi-precision state: (momentum, weight32)

    def __init__(self, momentum=0.0, lazy_update=True, eta=0.001, eps=0,
                 momentum_correction=True, **kwargs):
        super().__init__(**kwargs)
        self.momentum = momentum
        self.momentum_correction = momentum_correction
        self.lazy_update = lazy_update
        self.eta = eta
        self.eps = eps
        self.last_lr = None
        self.cur_lr = None
        self._lr_update = None     # num_update at which cur_lr was read

    def set_wd_mult(self, args_wd_mult):
        self.wd_mult = {n: 0.0 for n in self.idx2name.values() if not n.endswith('_weight')}
        self.wd_mult.update(args_wd_mult)

    def create_state(self, index, weight):
        return _zeros_like(weight) if self.momentum != 0.0 else None

    def _scheduled_lr(self):
        """Track the learning rate of this step and the previous one (once per step)."""
        if self._lr_update != self.num_update:
            lr = self.lr_scheduler(self.num_update) if self.lr_scheduler is not None \
                else self.lr
            self.last_lr = lr if self.cur_lr is None else self.cur_lr
            self.cur_lr = lr
            self._lr_update = self.num_update

    def _step(self, index, weight, grad, state, lr, wd):
        xp, w = weight.xp, weight._data
        self._scheduled_lr()
        g = _dense_grad(grad)
        name = self.idx2name.get(index, str(index))
        lr = float(lr)
        if not name.endswith(('gamma', 'beta', 'bias')):
            w_norm = _norm(xp, w)
            g_norm = _norm(xp, g) * float(self.rescale_grad)
            if w_norm > 0.0 and g_norm > 0.0:
                lr *= self.eta * w_norm / (g_norm + float(wd) * w_norm + self.eps)
        momentum = self.momentum
        if momentum > 0 and self.momentum_correction and self.last_lr != 0:
            momentum = momentum * (self.cur_lr / self.last_lr)
        mom = None if state is None or self.momentum <= 0 else _data(state)
        sgd_kernel(xp, w, g, mom, lr, float(wd), float(self.rescale_grad), self._clip,
                   float(momentum))


@register
class LAMB(Optimizer):
    """Layer-wise adaptive moments (You et al. 2019), MXNet 1.9's rule::

        g = clip(rescale_grad * grad, clip_gradient)
        mean = beta1 * mean + (1 - beta1) * g;  var = beta2 * var + (1 - beta2) * g**2
        u = mean_hat / (sqrt(var_hat) + epsilon) + wd * weight   (hats: bias-corrected)
        r1 = |weight| clamped to [lower_bound, upper_bound];  r2 = |u|
        weight -= lr * (r1 / r2 if r1 and r2 else 1) * u

    Args:
        learning_rate: default 0.001.
        beta1, beta2, epsilon: as in Adam (epsilon 1e-6).
        lower_bound, upper_bound: bounds of the weight norm (None: unbounded).
        bias_correction: use the bias-corrected moments.
        **kwargs: see :class:`Optimizer`.
    """

    def __init__(self, learning_rate=0.001, beta1=0.9, beta2=0.999, epsilon=1e-6,
                 lower_bound=None, upper_bound=None, bias_correction=True, **kwargs):
        super().__init__(learning_rate=learning_rate, **kwargs)
        self.beta1 = beta1
        self.beta2 = beta2
        self.epsilon = epsilon
        self.lower_bound = lower_bound
        self.upper_bound = upper_bound
        self.bias_correction = bias_correction

    def create_state(self, index, weight):
        return (_zeros_like(weight), _zeros_like(weight))   # mean, var

    def _step(self, index, weight, grad, state, lr, wd):
        xp, w = weight.xp, weight._data
        t = self._index_update_count[index]
        b1, b2 = float(self.beta1), float(self.beta2)
        mean, var = _data(state[0]), _data(state[1])
        g = _scaled_grad(xp, _dense_grad(grad), float(self.rescale_grad), self._clip)
        mean *= b1
        mean += g * (1.0 - b1)
        var *= b2
        var += g * g * (1.0 - b2)
        if self.bias_correction:
            u = mean / (1.0 - b1 ** t)
            den = xp.sqrt(var / (1.0 - b2 ** t))
        else:
            u = mean.copy()
            den = xp.sqrt(var)
        den += float(self.epsilon)
        u /= den
        if wd:
            u += w * float(wd)
        r1, r2 = _norm(xp, w), _norm(xp, u)
        if self.lower_bound:
            r1 = max(r1, float(self.lower_bound))
        if self.upper_bound:
            r1 = min(r1, float(self.upper_bound))
        lr = float(lr) * (r1 / r2 if r1 != 0.0 and r2 != 0.0 else 1.0)
        u *= lr
        w -= u


@register
class LBSGD(Optimizer):
    """Large-batch SGD with learning-rate warm-up (MXNet 1.9's rule).

    Gradients are accumulated over ``batch_scale`` updates; every ``batch_scale``-th update
    applies SGD (with momentum) on their mean with the learning rate times a warm-up
    multiplier growing from 1 to ``batch_scale`` over ``warmup_epochs * updates_per_epoch``
    updates ('linear', 'power2' or 'sqrt'), or times a LARS-like ratio
    ``clip(sqrt(|w|^2 / (|g|^2 + wd |w|^2)), 0.01, 100)`` with ``warmup_strategy='lars'``.
    Other updates leave the weight unchanged. As in MXNet, the learning rate is read
    before the update is counted.

    Args:
        momentum: the momentum factor.
        multi_precision: float32 master weights for float16 parameters (the state is then
            ``(weight32, momentum)``, what MXNet 1.9's Trainer path gives).
        warmup_strategy, warmup_epochs, batch_scale, updates_per_epoch, begin_epoch,
        num_epochs: see above (``num_epochs`` is accepted and unused, as in MXNet).
        **kwargs: see :class:`Optimizer`.
    """

    def __init__(self, momentum=0.0, multi_precision=False, warmup_strategy='linear',
                 warmup_epochs=5, batch_scale=1, updates_per_epoch=32, begin_epoch=0,
                 num_epochs=60, **kwargs):
        super().__init__(multi_precision=multi_precision, **kwargs)
        self.momentum = momentum
        self.warmup_strategy = warmup_strategy
        self.warmup_epochs = warmup_epochs
        self.batch_scale = batch_scale
        self.updates_per_epoch = updates_per_epoch
        self.init_updates = begin_epoch * updates_per_epoch
        self.num_epochs = num_epochs
        self._cumulated = {}       # index -> [gradient sum or None, count]

    def create_state(self, index, weight):
        return _zeros_like(weight) if self.momentum != 0.0 else None

    def _get_lbmult(self, nup):
        nwup = self.warmup_epochs * self.updates_per_epoch
        maxmult = float(self.batch_scale)
        if nup >= nwup:
            return maxmult
        if nwup <= 1:
            return 1.0
        strategy = self.warmup_strategy
        if strategy == 'linear':
            return 1.0 + (maxmult - 1) * nup / nwup
        if strategy == 'power2':
            return 1.0 + (maxmult - 1) * (nup * nup) / (nwup * nwup)
        if strategy == 'sqrt':
            return 1.0 + (maxmult - 1) * math.sqrt(float(nup) / nwup)
        return 1.0

    def update(self, index, weight, grad, state):
        if isinstance(index, (list, tuple)):
            for i, w, g, s in zip(index, weight, grad, state):
                self.update(i, w, g, s)
            return
        lr, wd = self._get_lr(index), self._get_wd(index)     # before counting, as MXNet
        self._update_count(index)
        xp, w = weight.xp, weight._data
        g = _dense_grad(grad)
        entry = self._cumulated.get(index)
        if entry is None or entry[1] == 0:
            entry = [g.copy(), self.init_updates + 1]
        else:
            entry = [g.copy() if entry[0] is None else entry[0] + g, entry[1] + 1]
        self._cumulated[index] = entry
        if entry[1] % self.batch_scale:
            return
        g = entry[0] / self.batch_scale
        if self.warmup_strategy == 'lars':
            w2, g2 = _norm(xp, w) ** 2, _norm(xp, g) ** 2
            mult = min(max(math.sqrt(w2 / (g2 + wd * w2 + 1e-18)), 0.01), 100.0)
        else:
            mult = self._get_lbmult(entry[1])
        mom = None if state is None or self.momentum <= 0 else _data(state)
        sgd_kernel(xp, w, g, mom, float(lr * mult), float(wd), float(self.rescale_grad),
                   self._clip, float(self.momentum))
        entry[0] = None
