"""Per-coordinate adaptive optimizers: RMSProp (plain and centered), AdaGrad, AdaDelta, Ftrl."""
from .base import (Optimizer, register, _is_sparse, _data, _zeros_like, _dense_grad,
                   _sparse_rows, _scaled_grad)

__all__ = ['RMSProp', 'AdaGrad', 'AdaDelta', 'Ftrl']


def rmsprop_kernel(xp, w, g, n, lr, wd, rescale, clip, gamma1, epsilon, clip_weights):
    """MXNet's ``rmsprop_update`` in place::

        g = clip(rescale * g + wd * w)
        n = (1 - gamma1) * g**2 + gamma1 * n
        w -= lr * g / sqrt(n + epsilon)         # then clipped to +-clip_weights
    """
    t = _scaled_grad(xp, g, rescale, clip, wd, w)
    tmp = t * t                   # one scratch array: large temporaries cost page faults
    tmp *= 1.0 - gamma1
    n *= gamma1
    n += tmp
    xp.add(n, epsilon, out=tmp)
    xp.sqrt(tmp, out=tmp)
    t /= tmp
    t *= lr
    w -= t
    if clip_weights is not None:
        xp.clip(w, -clip_weights, clip_weights, out=w)


def rmspropalex_kernel(xp, w, g, n, gbar, delta, lr, wd, rescale, clip, gamma1, gamma2,
                       epsilon, clip_weights):
    """MXNet's ``rmspropalex_update`` (Graves' centered RMSProp) in place::

        g = clip(rescale * g + wd * w)
        n = (1 - gamma1) * g**2 + gamma1 * n
        gbar = (1 - gamma1) * g + gamma1 * gbar
        delta = gamma2 * delta - lr * g / sqrt(n - gbar**2 + epsilon)
        w += delta                              # then clipped to +-clip_weights
    """
    t = _scaled_grad(xp, g, rescale, clip, wd, w)
    tmp = t * t
    tmp *= 1.0 - gamma1
    n *= gamma1
    n += tmp
    xp.multiply(t, 1.0 - gamma1, out=tmp)
    gbar *= gamma1
    gbar += tmp
    xp.multiply(gbar, gbar, out=tmp)
    xp.subtract(n, tmp, out=tmp)
    tmp += epsilon
    xp.sqrt(tmp, out=tmp)
    t /= tmp
    t *= lr
    delta *= gamma2
    delta -= t
    w += delta
    if clip_weights is not None:
        xp.clip(w, -clip_weights, clip_weights, out=w)


def adagrad_kernel(xp, w, g, history, lr, wd, rescale, clip, eps):
    """MXNet's AdaGrad in place::

        g = clip(rescale * g)
        history += g**2
        w -= lr * (g / sqrt(history + eps) + wd * w)
    """
    t = _scaled_grad(xp, g, rescale, clip)
    tmp = t * t
    history += tmp
    xp.add(history, eps, out=tmp)
    xp.sqrt(tmp, out=tmp)
    t /= tmp
    if wd:
        xp.multiply(w, wd, out=tmp)
        t += tmp
    t *= lr
    w -= t


def adadelta_kernel(xp, w, g, acc_g, acc_delta, wd, rescale, clip, rho, epsilon):
    """MXNet's AdaDelta in place (no learning rate)::

        g = clip(rescale * g)
        acc_g = rho * acc_g + (1 - rho) * g**2
        delta = sqrt(acc_delta + epsilon) / sqrt(acc_g + epsilon) * g
        acc_delta = rho * acc_delta + (1 - rho) * delta**2
        w -= delta + wd * w
    """
    t = _scaled_grad(xp, g, rescale, clip)
    tmp = t * t
    tmp *= 1.0 - rho
    acc_g *= rho
    acc_g += tmp
    xp.add(acc_delta, epsilon, out=tmp)
    xp.sqrt(tmp, out=tmp)
    t *= tmp
    xp.add(acc_g, epsilon, out=tmp)
    xp.sqrt(tmp, out=tmp)
    t /= tmp                       # t is now delta
    xp.multiply(t, t, out=tmp)
    tmp *= 1.0 - rho
    acc_delta *= rho
    acc_delta += tmp
    if wd:
        xp.multiply(w, wd, out=tmp)
        t += tmp
    w -= t


@register
class RMSProp(Optimizer):
    """RMSProp: Tieleman & Hinton's (``centered=False``) or Graves' centered version.

    See :func:`rmsprop_kernel` and :func:`rmspropalex_kernel` for the exact rules (MXNet's).

    Args:
        learning_rate: default 0.001.
        gamma1: decay of the moving averages of the gradient (and its square).
        gamma2: momentum of the centered version.
        epsilon: added under the square root.
        centered: use Graves' centered version (three states instead of one).
        clip_weights: clip the weights to ``[-clip_weights, clip_weights]`` after each
            update (None or <= 0: no clipping).
        **kwargs: see :class:`Optimizer`.
    """

    def __init__(self, learning_rate=0.001, gamma1=0.9, gamma2=0.9, epsilon=1e-8,
                 centered=False, clip_weights=None, **kwargs):
        super().__init__(learning_rate=learning_rate, **kwargs)
        self.gamma1 = gamma1
        self.gamma2 = gamma2
        self.centered = centered
        self.epsilon = epsilon
        self.clip_weights = clip_weights

    def create_state(self, index, weight):
        if self.centered:
            return (_zeros_like(weight), _zeros_like(weight), _zeros_like(weight))  # n, g, delta
        return (_zeros_like(weight),)   # n

    def _step(self, index, weight, grad, state, lr, wd):
        cw = self.clip_weights
        cw = float(cw) if cw is not None and cw > 0 else None
        common = (float(lr), float(wd), float(self.rescale_grad), self._clip)
        g = _dense_grad(grad)
        if self.centered:
            n, gbar, delta = (_data(s) for s in state)
            rmspropalex_kernel(weight.xp, weight._data, g, n, gbar, delta, *common,
                               float(self.gamma1), float(self.gamma2), float(self.epsilon), cw)
        else:
            rmsprop_kernel(weight.xp, weight._data, g, _data(state[0]), *common,
                           float(self.gamma1), float(self.epsilon), cw)


@register
class AdaGrad(Optimizer):
    """AdaGrad (Duchi et al.), MXNet's rule (see :func:`adagrad_kernel`).

    With a row-sparse gradient and ``lazy_update=True`` only the gradient's rows of the
    weight and the history change (MXNet's sparse ``adagrad_update``, which there also
    requires ``wd=0``; xpnet applies the decay to the touched rows).

    Args:
        eps: added to the history under the square root.
        lazy_update: lazy updates for row-sparse gradients (an xpnet addition).
        **kwargs: see :class:`Optimizer` (``learning_rate`` defaults to 0.01).
    """
    _supports_lazy = True

    def __init__(self, eps=1e-7, lazy_update=True, **kwargs):
        super().__init__(**kwargs)
        self.float_stable_eps = eps
        self.lazy_update = lazy_update

    def create_state(self, index, weight):
        return _zeros_like(weight)   # history

    def _step(self, index, weight, grad, state, lr, wd):
        xp, w, history = weight.xp, weight._data, _data(state)
        args = (float(lr), float(wd), float(self.rescale_grad), self._clip,
                float(self.float_stable_eps))
        if _is_sparse(grad) and self.lazy_update:
            rows, values = _sparse_rows(grad)
            w_rows, h_rows = w[rows], history[rows]
            adagrad_kernel(xp, w_rows, values, h_rows, *args)
            w[rows], history[rows] = w_rows, h_rows
            return
        adagrad_kernel(xp, w, _dense_grad(grad), history, *args)


@register
class AdaDelta(Optimizer):
    """AdaDelta (Zeiler), MXNet's rule (see :func:`adadelta_kernel`).

    As in MXNet the learning rate is not used, and weight decay is subtracted from the
    weight directly. (MXNet also rescales the caller's gradient array in place; xpnet leaves
    gradients untouched.)

    Args:
        rho: decay rate of both accumulators.
        epsilon: added under the square roots.
        **kwargs: see :class:`Optimizer`.
    """

    def __init__(self, rho=0.90, epsilon=1e-5, **kwargs):
        super().__init__(**kwargs)
        self.rho = rho
        self.epsilon = epsilon

    def create_state(self, index, weight):
        return (_zeros_like(weight), _zeros_like(weight))   # accumulated g, accumulated delta

    def _step(self, index, weight, grad, state, lr, wd):
        adadelta_kernel(weight.xp, weight._data, _dense_grad(grad), _data(state[0]),
                        _data(state[1]), float(wd), float(self.rescale_grad), self._clip,
                        float(self.rho), float(self.epsilon))


@register
class Ftrl(Optimizer):
    """FTRL-Proximal (McMahan et al. 2013), MXNet 1.9's ``ftrl_update``::

        g = clip(rescale_grad * grad, clip_gradient)
        z += g - (sqrt(n + g**2) - sqrt(n)) * weight / lr
        n += g**2
        weight = (sign(z) * lamda1 - z) / ((beta + sqrt(n)) / lr + wd) * (|z| > lamda1)

    The state is ``(z, n)``.

    Args:
        lamda1: L1 regularization strength.
        learning_rate: default 0.1.
        beta: per-coordinate learning-rate parameter.
        **kwargs: see :class:`Optimizer`.
    """

    def __init__(self, lamda1=0.01, learning_rate=0.1, beta=1, **kwargs):
        super().__init__(**kwargs)
        self.lamda1 = lamda1
        self.beta = beta
        self.lr = learning_rate

    def create_state(self, index, weight):
        return (_zeros_like(weight), _zeros_like(weight))   # z, n

    def _step(self, index, weight, grad, state, lr, wd):
        xp, w = weight.xp, weight._data
        lr, lamda1 = float(lr), float(self.lamda1)
        z, n = _data(state[0]), _data(state[1])
        g = _scaled_grad(xp, _dense_grad(grad), float(self.rescale_grad), self._clip)
        g2 = g * g
        sigma = xp.sqrt(n + g2)
        sigma -= xp.sqrt(n)
        sigma *= w
        sigma /= lr
        z += g
        z -= sigma
        n += g2
        num = xp.sign(z)
        num *= lamda1
        num -= z
        den = xp.sqrt(n)
        den += float(self.beta)
        den /= lr
        den += float(wd)
        num /= den
        num *= xp.abs(z) > lamda1
        w[...] = num
