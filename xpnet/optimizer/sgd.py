"""SGD (with momentum and lazy row-sparse updates), Nesterov's accelerated gradient, and
the SGD variants of MXNet 1.9: ccSGD (an alias), DCASGD and SGLD."""
import math

from .. import random as _random
from .base import (Optimizer, register, _is_sparse, _data, _zeros_like, _dense_grad,
                   _sparse_rows, _scaled_grad, skipped_standin)

__all__ = ['SGD', 'NAG', 'ccSGD', 'DCASGD', 'SGLD', 'sgd_kernel']


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
    _master_first = False          # multi-precision state: (momentum, weight32)

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

    def _fused_update(self, xp, table, ws, gs, states, indices, lrs, wds, skip):
        """All tensors of one device and dtype in one multi-tensor kernel."""
        from ..backend.kernels.optim import sgd_update
        _momentum_update(self, sgd_kernel, sgd_update, xp, table, ws, gs, states, lrs, wds,
                         skip)


def _momentum_update(opt, kernel, launch, xp, table, ws, gs, states, lrs, wds, skip):
    """SGD's or NAG's multi-tensor update: ``launch`` (the device kernel's launcher) with
    ``kernel`` (the NumPy kernel) per tensor as the simulated device's stand-in."""
    moms = [None if s is None or opt.momentum <= 0 else _data(s) for s in states]
    rescale, clip, momentum = float(opt.rescale_grad), opt._clip, float(opt.momentum)

    def standin():
        skipped_standin(xp, skip, ws + [m for m in moms if m is not None], lambda: [
            kernel(xp, w, g, m, lr, wd, rescale, clip, momentum)
            for w, g, m, lr, wd in zip(ws, gs, moms, lrs, wds)])
    launch(xp, table, ws, gs, moms, lrs, wds, rescale, clip, momentum, skip, standin)


SGD._fused_step_owner = SGD


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

    _master_first = False          # multi-precision state: (momentum, weight32)

    def __init__(self, momentum=0.0, **kwargs):
        super().__init__(**kwargs)
        self.momentum = momentum

    def create_state(self, index, weight):
        return _zeros_like(weight) if self.momentum != 0.0 else None

    def _step(self, index, weight, grad, state, lr, wd):
        mom = None if state is None or self.momentum <= 0 else _data(state)
        nag_kernel(weight.xp, weight._data, _dense_grad(grad), mom, float(lr), float(wd),
                   float(self.rescale_grad), self._clip, float(self.momentum))

    def _fused_update(self, xp, table, ws, gs, states, indices, lrs, wds, skip):
        """All tensors of one device and dtype in one multi-tensor kernel."""
        from ..backend.kernels.optim import nag_update
        _momentum_update(self, nag_kernel, nag_update, xp, table, ws, gs, states, lrs, wds,
                         skip)


NAG._fused_step_owner = NAG


@register
class ccSGD(SGD):
    """MXNet's deprecated name for :class:`SGD` (same arguments, same updates)."""


@register
class DCASGD(Optimizer):
    """Delay-compensated asynchronous SGD (Zheng et al. 2016), MXNet 1.9's rule::

        g = clip(rescale_grad * grad, clip_gradient)
        mom = momentum * mom - lr * (g + wd * weight + lamda * g * g * (weight - previous))
        previous = weight
        weight += mom

    The state is ``(mom or None, previous weight)``. (MXNet 1.9.1 fails for
    ``momentum > 0`` on arrays of more than one element: it tests the momentum array's truth
    value; xpnet applies the rule above.)

    Args:
        momentum: the momentum factor (0: no momentum state).
        lamda: the delay-compensation factor.
        **kwargs: see :class:`Optimizer`.
    """

    def __init__(self, momentum=0.0, lamda=0.04, **kwargs):
        super().__init__(**kwargs)
        self.momentum = momentum
        self.lamda = lamda

    def create_state(self, index, weight):
        previous = weight.copy()
        return (None if self.momentum == 0.0 else _zeros_like(weight), previous)

    def _step(self, index, weight, grad, state, lr, wd):
        xp, w = weight.xp, weight._data
        mom, previous = state
        g = _scaled_grad(xp, _dense_grad(grad), float(self.rescale_grad), self._clip)
        step = g + w * float(wd)
        diff = w - _data(previous)
        diff *= g
        diff *= g
        diff *= float(self.lamda)
        step += diff
        step *= -float(lr)
        if mom is not None:
            m = _data(mom)
            m *= float(self.momentum)
            m += step
            step = m
        _data(previous)[...] = w
        w += step


@register
class SGLD(Optimizer):
    """Stochastic gradient Langevin dynamics (Welling & Teh 2011), MXNet 1.9's rule::

        g = clip(rescale_grad * grad, clip_gradient)
        weight += -lr / 2 * (g + wd * weight) + normal(0, sqrt(lr))

    The noise comes from ``xpnet.random`` (seed it with ``xpnet.random.seed``), drawn on the
    host, so a run is reproducible on every device (it cannot equal MXNet's draws).
    """

    def _step(self, index, weight, grad, state, lr, wd):
        xp, w = weight.xp, weight._data
        lr = float(lr)
        step = _scaled_grad(xp, _dense_grad(grad), float(self.rescale_grad), self._clip,
                            float(wd), w)
        step *= -lr / 2
        w += step
        w += _random.normal_array(w.shape, weight.context, 0.0, math.sqrt(lr), w.dtype)
