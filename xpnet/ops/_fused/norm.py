"""Training-mode batch normalization (+ ReLU) on a device: two kernels forward (statistics
with the running averages; normalization), two backward (:mod:`xpnet.backend.kernels.norm`),
on the (rows, channels) matrix of the input -- a view for convolution outputs, which are
channels-last."""
from ...backend.kernels import norm as _k
from .._base import float_data

__all__ = ['applies', 'batch_norm_train']


def applies(x, gamma):
    from ...backend.kernels import fused
    dt = float_data(x._data).dtype
    return fused(x.xp, dt) and gamma.dtype == dt


def batch_norm_train(xp, xd, gamma, beta, running_mean, running_var, axis, eps, momentum,
                     act, need):
    """``(y, backward)`` of ``ops.batch_norm`` in training mode (batch statistics) on a
    device: ``xd`` the float input data, ``gamma``/``beta`` data or None (fixed gamma, no
    centering), the running averages updated in place; ``need`` the gradient flags of
    (x, gamma, beta) or None."""
    from ..normalization import _channel_rows
    x2, mshape = _channel_rows(xp, xd, axis)
    dt = x2.dtype
    beta = None if beta is None else beta.astype(dt, copy=False)
    rm, rv = running_mean, running_var
    fused_running = rm.dtype == dt and rv.dtype == dt
    relu = act == 'relu'
    y2, mean, var, invstd = _k.batch_norm_forward(
        xp, x2, gamma, beta, eps, relu, (rm, rv, momentum) if fused_running else None)
    if not fused_running:
        rm *= momentum
        rm += (1 - momentum) * mean.astype(rm.dtype)
        rv *= momentum
        rv += (1 - momentum) * var.astype(rv.dtype)
    y = xp.moveaxis(y2.reshape(mshape), -1, axis)
    if need is None:
        return y, None

    def backward(g):
        g2 = _channel_rows(xp, g, axis)[0]
        gx2, dgamma, dbeta = _k.batch_norm_backward(xp, g2, y2, x2, mean, invstd, gamma,
                                                    relu, need[0])
        gx = None if gx2 is None else xp.moveaxis(gx2.reshape(mshape), -1, axis)
        return (gx, dgamma if need[1] else None, dbeta if need[2] else None)
    return y, backward
