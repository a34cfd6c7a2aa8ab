"""SGD (with momentum and lazy row-sparse updates) and Nesterov's accelerated gradient."""
from .base import (Optimizer, register, _is_sparse, _data, _zeros_like, _dense_grad,
                   _sparse_rows, _scaled_grad)

__all__ = ['SGD', 'NAG']


def _lr_grad(xp, g, lr, rescale, clip):
    """A fresh array ``lr * clip(rescale * g)``."""
    if clip is None:
        return g * (lr * rescale)      # one pass, one temporary: the hot path of training
    t = g * rescale
    xp.clip(t, -clip, clip, out=t)
    t *= lr
    return t


def sgd_kernel(xp, w, g, mom, lr, wd, rescale, clip, momentum):
    """MXNet's ``sgd_update`` / ``sgd_mom_update`` in place on xp arrays::

        mom = momentum * mom - lr * wd * w - lr * clip(rescale * g)
        w += mom                    # without momentum: w = (1 - lr*wd) * w - lr * clip(...)
    """
    t = _lr_grad(xp, g, lr, rescale, clip)
    if mom is None:
        if wd:
            w *= 1.0 - lr * wd
        w -= t
        return
    mom *= momentum
    mom -= t
    if wd:
        xp.multiply(w, lr * wd, out=t)
        mom -= t
    w += mom


def nag_kernel(xp, w, g, mom, lr, wd, rescale, clip, momentum):
    """Nesterov momentum in place (MXNet's ``nag_mom_update``)::

        d = lr * (clip(rescale * g) + wd * w)
        mom = momentum * mom - d
        w += momentum * mom - d
    """
    t = _scaled_grad(xp, g, rescale, clip)
    if wd:
        t += w * wd
    t *= lr
    if mom is None:
        w -= t
        return
    mom *= momentum
    mom -= t
    w -= t
    xp.multiply(mom, momentum, out=t)
    w += t


@register
class SGD(Optimizer):
    """Stochastic gradient descent with momentum and weight decay (MXNet's update rule).

    ::

        mom = momentum * mom - lr * (clip(rescale_grad * grad, clip_gradient) + wd * weight)
        weight += mom

    The state ``mom`` holds the (negative) velocity, as in MXNet. With a row-sparse gradient
    and ``lazy_update=True`` only the gradient's rows of the weight and the momentum change
    (weight decay and momentum decay included); with ``lazy_update=False`` the gradient is
    used densified, so every row decays.

    Args:
        momentum: the momentum factor (0 disables it and the state).
        lazy_update: lazy updates for row-sparse gradients.
        **kwargs: see :class:`Optimizer` (``learning_rate`` defaults to 0.01).

    Example::

        trainer = xpnet.Trainer(net.collect_params(), 'sgd',
                                {'learning_rate': 0.1, 'momentum': 0.9, 'wd': 1e-4})
    """
    _supports_lazy = True

    def __init__(self, momentum=0.0, lazy_update=True, **kwargs):
        super().__init__(**kwargs)
        self.momentum = momentum
        self.lazy_update = lazy_update

    def create_state(self, index, weight):
        return _zeros_like(weight) if self.momentum != 0.0 else None

    def _step(self, index, weight, grad, state, lr, wd):
        xp, w = weight.xp, weight._data
        mom = None if state is None or self.momentum <= 0 else _data(state)
        args = (float(lr), float(wd), float(self.rescale_grad), self._clip,
                float(self.momentum))
        if _is_sparse(grad) and self.lazy_update:
            rows, values = _sparse_rows(grad)
            w_rows = w[rows]
            mom_rows = None if mom is None else mom[rows]
            sgd_kernel(xp, w_rows, values, mom_rows, *args)
            w[rows] = w_rows
            if mom is not None:
                mom[rows] = mom_rows
            return
        sgd_kernel(xp, w, _dense_grad(grad), mom, *args)


@register
class NAG(Optimizer):
    """Nesterov accelerated gradient.

    ::

        d = lr * (clip(rescale_grad * grad, clip_gradient) + wd * weight)
        mom = momentum * mom - d
        weight += momentum * mom - d

    This is MXNet's ``nag_mom_update`` kernel. MXNet 1.9's ``NAG`` optimizer calls that kernel
    with the weight as its own output, so its momentum's weight-decay term reads the
    *already updated* weight (an aliasing slip, a second-order difference in ``lr * wd``);
    xpnet uses the weight before the step, as the kernel intends. With ``wd=0`` the two agree
    exactly. Row-sparse gradients are used densified.

    Args:
        momentum: the momentum factor (0 makes this plain SGD).
        **kwargs: see :class:`Optimizer`.
    """

    def __init__(self, momentum=0.0, **kwargs):
        super().__init__(**kwargs)
        self.momentum = momentum

    def create_state(self, index, weight):
        return _zeros_like(weight) if self.momentum != 0.0 else None

    def _step(self, index, weight, grad, state, lr, wd):
        mom = None if state is None or self.momentum <= 0 else _data(state)
        nag_kernel(weight.xp, weight._data, _dense_grad(grad), mom, float(lr), float(wd),
                   float(self.rescale_grad), self._clip, float(self.momentum))
