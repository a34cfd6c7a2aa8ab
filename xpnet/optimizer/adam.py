"""Adam (MXNet 1.9's rule, with lazy row-sparse updates), AdamW (decoupled weight decay),
and MXNet's Adam variants Adamax, Nadam and FTML."""
import math

from .base import (Optimizer, register, _is_sparse, _data, _zeros_like, _dense_grad,
                   _sparse_rows, _scaled_grad, skipped_standin)

__all__ = ['Adam', 'AdamW', 'Adamax', 'Nadam', 'FTML']


def _moments(xp, t, mean, var, beta1, beta2, epsilon):
    """Update the moments from the prepared gradient ``t`` (consumed) and return
    ``mean / (sqrt(var) + epsilon)`` in ``t``'s buffer."""
    tmp = t * (1.0 - beta1)
    mean *= beta1
    mean += tmp
    xp.multiply(t, t, out=t)
    t *= 1.0 - beta2
    var *= beta2
    var += t
    del tmp                        # at most two large temporaries alive: fewer page faults
    xp.sqrt(var, out=t)
    t += epsilon
    xp.divide(mean, t, out=t)
    return t


def adam_kernel(xp, w, g, mean, var, lr, wd, rescale, clip, beta1, beta2, epsilon):
    """MXNet's ``adam_update`` in place (``lr`` already bias-corrected)::

        g = clip(rescale * g + wd * w)
        mean = beta1 * mean + (1 - beta1) * g
        var = beta2 * var + (1 - beta2) * g**2
        w -= lr * mean / (sqrt(var) + epsilon)
    """
    t = _scaled_grad(xp, g, rescale, clip, wd, w)
    t = _moments(xp, t, mean, var, beta1, beta2, epsilon)
    t *= lr
    w -= t


def adamw_kernel(xp, w, g, mean, var, lr_t, decay, rescale, clip, beta1, beta2, epsilon):
    """Decoupled weight decay in place::

        g = clip(rescale * g)
        mean, var as Adam
        w -= lr_t * mean / (sqrt(var) + epsilon) + decay * w      # decay = lr * wd
    """
    t = _scaled_grad(xp, g, rescale, clip)
    t = _moments(xp, t, mean, var, beta1, beta2, epsilon)
    t *= lr_t
    if decay:
        w *= 1.0 - decay
    w -= t


class _AdamBase(Optimizer):
    def __init__(self, learning_rate=0.001, beta1=0.9, beta2=0.999, epsilon=1e-8,
                 lazy_update=True, **kwargs):
        super().__init__(learning_rate=learning_rate, **kwargs)
        self.beta1 = beta1
        self.beta2 = beta2
        self.epsilon = epsilon
        self.lazy_update = lazy_update

    def create_state(self, index, weight):
        return (_zeros_like(weight), _zeros_like(weight))   # mean, variance

    def _corrected_lr(self, index, lr):
        t = self._index_update_count[index]
        return lr * math.sqrt(1.0 - self.beta2 ** t) / (1.0 - self.beta1 ** t)

    def _apply(self, kernel, weight, grad, state, *args):
        xp, w = weight.xp, weight._data
        mean, var = _data(state[0]), _data(state[1])
        if _is_sparse(grad) and self.lazy_update and self._supports_lazy:
            rows, values = _sparse_rows(grad)
            w_rows, m_rows, v_rows = w[rows], mean[rows], var[rows]
            kernel(xp, w_rows, values, m_rows, v_rows, *args)
            w[rows], mean[rows], var[rows] = w_rows, m_rows, v_rows
            return
        kernel(xp, w, _dense_grad(grad), mean, var, *args)

    def _moment_arrays(self, states):
        return [_data(s[0]) for s in states], [_data(s[1]) for s in states]

    def _fused_standin(self, xp, skip, kernel, ws, gs, means, variances, per_tensor):
        """The NumPy kernel per tensor (the simulated device's stand-in)."""
        consts = (float(self.rescale_grad), self._clip, float(self.beta1), float(self.beta2),
                  float(self.epsilon))

        def standin():
            skipped_standin(xp, skip, ws + means + variances, lambda: [
                kernel(xp, w, g, m, v, a, b, *consts)
                for w, g, m, v, (a, b) in zip(ws, gs, means, variances, per_tensor)])
        return standin


@register
class Adam(_AdamBase):
    """The Adam optimizer (Kingma & Ba), MXNet 1.9's formulation.

    At the t-th update of a weight::

        g = clip(rescale_grad * grad + wd * weight, clip_gradient)
        mean = beta1 * mean + (1 - beta1) * g
        var = beta2 * var + (1 - beta2) * g**2
        lr_t = learning_rate * sqrt(1 - beta2**t) / (1 - beta1**t)
        weight -= lr_t * mean / (sqrt(var) + epsilon)

    Weight decay is L2 (added to the gradient); see :class:`AdamW` for decoupled decay.
    With a row-sparse gradient and ``lazy_update=True`` only the gradient's rows of the
    weight, mean and var change.

    Args:
        learning_rate: default 0.001.
        beta1, beta2: decay rates of the moment estimates.
        epsilon: added to ``sqrt(var)``.
        lazy_update: lazy updates for row-sparse gradients.
        **kwargs: see :class:`Optimizer`.
    """
    _supports_lazy = True

    def _step(self, index, weight, grad, state, lr, wd):
        self._apply(adam_kernel, weight, grad, state, self._corrected_lr(index, float(lr)),
                    float(wd), float(self.rescale_grad), self._clip, float(self.beta1),
                    float(self.beta2), float(self.epsilon))

    def _fused_update(self, xp, table, ws, gs, states, indices, lrs, wds, skip):
        """All tensors of one device and dtype in one multi-tensor kernel."""
        from ..backend.kernels.optim import adam_update
        means, variances = self._moment_arrays(states)
        lr_ts = [self._corrected_lr(i, lr) for i, lr in zip(indices, lrs)]
        standin = self._fused_standin(xp, skip, adam_kernel, ws, gs, means, variances,
                                      list(zip(lr_ts, wds)))
        adam_update(xp, table, ws, gs, means, variances, lr_ts, wds, float(self.rescale_grad),
                    self._clip, float(self.beta1), float(self.beta2), float(self.epsilon),
                    skip, standin)


@register
class AdamW(_AdamBase):
    """Adam with decoupled weight decay (Loshchilov & Hutter, "Decoupled Weight Decay
    Regularization", ICLR 2019).

    MXNet 1.9 has no AdamW optimizer (only the ``contrib.adamw_update`` kernel), so this
    follows the paper with MXNet's argument names and Adam's bias-corrected step size::

        g = clip(rescale_grad * grad, clip_gradient)          # no wd in the gradient
        mean, var as in Adam
        lr_t = lr * sqrt(1 - beta2**t) / (1 - beta1**t)       # lr_t = lr if not correct_bias
        weight -= lr_t * mean / (sqrt(var) + epsilon) + lr * wd * weight

    ``lr`` is the scheduled learning rate times the parameter's ``lr_mult`` (the paper's
    schedule multiplier times alpha, with ``wd`` the paper's lambda / alpha: PyTorch's
    convention). This equals MXNet's ``adamw_update`` kernel called with
    ``lr=lr_t, eta=1, wd=lr*wd``. Row-sparse gradients are used densified.

    Args:
        learning_rate: default 0.001.
        beta1, beta2, epsilon: as in :class:`Adam`.
        correct_bias: apply Adam's bias correction to the step size.
        **kwargs: see :class:`Optimizer` (``wd`` is the decoupled decay).
    """

    def __init__(self, learning_rate=0.001, beta1=0.9, beta2=0.999, epsilon=1e-8,
                 correct_bias=True, **kwargs):
        kwargs.pop('lazy_update', None)
        super().__init__(learning_rate=learning_rate, beta1=beta1, beta2=beta2,
                         epsilon=epsilon, lazy_update=False, **kwargs)
        self.correct_bias = correct_bias

    def _step(self, index, weight, grad, state, lr, wd):
        lr = float(lr)
        lr_t = self._corrected_lr(index, lr) if self.correct_bias else lr
        self._apply(adamw_kernel, weight, grad, state, lr_t, lr * float(wd),
                    float(self.rescale_grad), self._clip, float(self.beta1),
                    float(self.beta2), float(self.epsilon))

    def _fused_update(self, xp, table, ws, gs, states, indices, lrs, wds, skip):
        """All tensors of one device and dtype in one multi-tensor kernel."""
        from ..backend.kernels.optim import adamw_update
        means, variances = self._moment_arrays(states)
        lr_ts = [self._corrected_lr(i, lr) if self.correct_bias else lr
                 for i, lr in zip(indices, lrs)]
        decays = [lr * wd for lr, wd in zip(lrs, wds)]
        standin = self._fused_standin(xp, skip, adamw_kernel, ws, gs, means, variances,
                                      list(zip(lr_ts, decays)))
        adamw_update(xp, table, ws, gs, means, variances, lr_ts, decays,
                     float(self.rescale_grad), self._clip, float(self.beta1),
                     float(self.beta2), float(self.epsilon), skip, standin)


Adam._fused_step_owner = Adam
AdamW._fused_step_owner = AdamW


@register
class Adamax(Optimizer):
    """AdaMax (Kingma & Ba, section 7), MXNet 1.9's rule::

        g = clip(rescale_grad * grad + wd * weight, clip_gradient)
        m = beta1 * m + (1 - beta1) * g
        u = maximum(beta2 * u, |g|)
        weight -= lr / (1 - beta1**t) * m / u

    Args:
        learning_rate: default 0.002.
        beta1, beta2: decay rates of the moment and of the infinity norm.
        **kwargs: see :class:`Optimizer`.
    """

    def __init__(self, learning_rate=0.002, beta1=0.9, beta2=0.999, **kwargs):
        super().__init__(learning_rate=learning_rate, **kwargs)
        self.beta1 = beta1
        self.beta2 = beta2

    def create_state(self, index, weight):
        return (_zeros_like(weight), _zeros_like(weight))   # m, u

    def _step(self, index, weight, grad, state, lr, wd):
        xp, w = weight.xp, weight._data
        t = self._index_update_count[index]
        b1, b2 = float(self.beta1), float(self.beta2)
        lr = float(lr) / (1.0 - b1 ** t)
        m, u = _data(state[0]), _data(state[1])
        g = _scaled_grad(xp, _dense_grad(grad), float(self.rescale_grad), self._clip,
                         float(wd), w)
        m *= b1
        m += g * (1.0 - b1)
        u *= b2
        xp.maximum(u, xp.abs(g, out=g), out=u)
        xp.divide(m, u, out=g)
        g *= lr
        w -= g


@register
class Nadam(Optimizer):
    """Nesterov-accelerated Adam (Dozat 2016), MXNet 1.9's rule::

        g = clip(rescale_grad * grad + wd * weight, clip_gradient)
        mu_t = beta1 * (1 - 0.5 * 0.96**(t * schedule_decay)), mu_t1 likewise at t + 1
        m_schedule = m_schedule * mu_t
        m = beta1 * m + (1 - beta1) * g;  v = beta2 * v + (1 - beta2) * g**2
        m_bar = (1 - mu_t) * g / (1 - m_schedule) + mu_t1 * m / (1 - m_schedule * mu_t1)
        weight -= lr * m_bar / (sqrt(v / (1 - beta2**t)) + epsilon)

    As in MXNet, ``m_schedule`` is one number for the whole optimizer, multiplied at every
    parameter's update (so it depends on the number of parameters).

    Args:
        learning_rate: default 0.001.
        beta1, beta2, epsilon: as in Adam.
        schedule_decay: decay of the momentum schedule.
        **kwargs: see :class:`Optimizer`.
    """

    def __init__(self, learning_rate=0.001, beta1=0.9, beta2=0.999, epsilon=1e-8,
                 schedule_decay=0.004, **kwargs):
        super().__init__(learning_rate=learning_rate, **kwargs)
        self.beta1 = beta1
        self.beta2 = beta2
        self.epsilon = epsilon
        self.schedule_decay = schedule_decay
        self.m_schedule = 1.0

    def create_state(self, index, weight):
        return (_zeros_like(weight), _zeros_like(weight))   # m, v

    def _step(self, index, weight, grad, state, lr, wd):
        xp, w = weight.xp, weight._data
        t = self._index_update_count[index]
        b1, b2 = float(self.beta1), float(self.beta2)
        g = _scaled_grad(xp, _dense_grad(grad), float(self.rescale_grad), self._clip,
                         float(wd), w)
        mu_t = b1 * (1.0 - 0.5 * 0.96 ** (t * self.schedule_decay))
        mu_t1 = b1 * (1.0 - 0.5 * 0.96 ** ((t + 1) * self.schedule_decay))
        self.m_schedule = self.m_schedule * mu_t
        m_next = self.m_schedule * mu_t1
        m, v = _data(state[0]), _data(state[1])
        m *= b1
        m += g * (1.0 - b1)
        v *= b2
        v += g * g * (1.0 - b2)
        m_bar = g * ((1.0 - mu_t) / (1.0 - self.m_schedule))
        m_bar += m * (mu_t1 / (1.0 - m_next))
        denom = xp.sqrt(v / (1.0 - b2 ** t))
        denom += float(self.epsilon)
        m_bar /= denom
        m_bar *= float(lr)
        w -= m_bar


@register
class FTML(Optimizer):
    """Follow the Moving Leader (Zheng & Kwok 2017), MXNet 1.9's ``ftml_update``::

        g = clip(rescale_grad * grad + wd * weight, clip_gradient)
        v = beta2 * v + (1 - beta2) * g**2
        d_t = (1 - beta1**t) / lr * (sqrt(v / (1 - beta2**t)) + epsilon)
        z = beta1 * z + (1 - beta1) * g - (d_t - beta1 * d) * weight
        d = d_t;  weight = -z / d_t

    The state is ``(d, v, z)``.

    Args:
        beta1, beta2, epsilon: see above (``learning_rate`` defaults to 0.01).
        **kwargs: see :class:`Optimizer`.
    """

    def __init__(self, beta1=0.6, beta2=0.999, epsilon=1e-8, **kwargs):
        super().__init__(**kwargs)
        self.beta1 = beta1
        self.beta2 = beta2
        self.epsilon = epsilon

    def create_state(self, index, weight):
        return (_zeros_like(weight), _zeros_like(weight), _zeros_like(weight))   # d, v, z

    def _step(self, index, weight, grad, state, lr, wd):
        xp, w = weight.xp, weight._data
        t = self._index_update_count[index]
        b1, b2 = float(self.beta1), float(self.beta2)
        d, v, z = (_data(s) for s in state)
        g = _scaled_grad(xp, _dense_grad(grad), float(self.rescale_grad), self._clip,
                         float(wd), w)
        v *= b2
        v += g * g * (1.0 - b2)
        d_t = xp.sqrt(v / (1.0 - b2 ** t))
        d_t += float(self.epsilon)
        d_t *= (1.0 - b1 ** t) / float(lr)
        z *= b1
        z += g * (1.0 - b1)
        sigma = d_t - d * b1
        sigma *= w
        z -= sigma
        d[...] = d_t
        xp.divide(z, d_t, out=w)
        xp.negative(w, out=w)
