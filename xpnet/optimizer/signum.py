"""Signum and signSGD (Bernstein et al. 2018): steps of fixed size along the sign."""
from .base import Optimizer, register, _data, _zeros_like, _dense_grad, _scaled_grad

__all__ = ['Signum']


@register
class Signum(Optimizer):
    """SIGN momentUM, MXNet 1.9's ``signum_update`` (``signsgd_update`` without momentum)::

        mom = momentum * mom - (1 - momentum) * (wd * weight + clip(rescale_grad * grad))
        weight = (1 - lr * wd_lh) * weight + lr * sign(mom)

    and with ``momentum=0``: ``weight = (1 - lr * wd) * weight - lr * sign(grad)`` (clipping
    cannot change a sign). The state is the (negative) momentum, as in MXNet.

    Args:
        learning_rate: default 0.01.
        momentum: the momentum factor (0: signSGD, no state).
        wd_lh: decoupled weight decay (Loshchilov & Hutter), applied outside the sign.
        **kwargs: see :class:`Optimizer`.
    """

    def __init__(self, learning_rate=0.01, momentum=0.9, wd_lh=0.0, **kwargs):
        super().__init__(learning_rate=learning_rate, **kwargs)
        self.momentum = momentum
        self.wd_lh = wd_lh

    def create_state(self, index, weight):
        return _zeros_like(weight) if self.momentum != 0.0 else None

    def _step(self, index, weight, grad, state, lr, wd):
        xp, w = weight.xp, weight._data
        lr, wd = float(lr), float(wd)
        g = _dense_grad(grad)
        if state is None:
            step = xp.sign(g)
            step *= lr
            if wd:
                w *= 1.0 - lr * wd
            w -= step
            return
        mom, beta = _data(state), float(self.momentum)
        t = _scaled_grad(xp, g, float(self.rescale_grad), self._clip)
        if wd:
            t += w * wd            # weight decay outside the clipping, as MXNet's kernel
        t *= 1.0 - beta
        mom *= beta
        mom -= t
        xp.sign(mom, out=t)
        t *= lr
        if self.wd_lh:
            w *= 1.0 - lr * float(self.wd_lh)
        w += t
