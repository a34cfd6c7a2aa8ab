"""Training-mode batch normalization (+ ReLU) on a device: two kernels forward (statistics
with the running averages; normalization), two backward (:mod:`xpnet.backend.kernels.norm`),
on the (rows, channels) matrix of the input -- a view for convolution outputs, which are
channels-last."""
from ...backend.kernels import norm as _k
from .._base import _wrap, float_data, needs_grad, record_op

__all__ = ['applies', 'batch_norm_train']


def applies(x, gamma):
    from ...backend.kernels import fused
    dt = float_data(x._data).dtype
    return fused(x.xp, dt) and gamma.dtype == dt


def batch_norm_train(x, gamma, beta, running_mean, running_var, axis, eps, momentum,
                     center, scale, act):
    """The device path of ``ops.batch_norm`` in training mode (batch statistics)."""
    from ..normalization import _channel_rows
    xp = x.xp
    x2, mshape = _channel_rows(xp, float_data(x._data), axis)
    dt = x2.dtype
    g_ = gamma._data if scale else None
    b_ = beta._data.astype(dt, copy=False) if center else None
    rm, rv = running_mean._data, running_var._data
    fused_running = rm.dtype == dt and rv.dtype == dt
    relu = act == 'relu'
    y2, mean, var, invstd = _k.batch_norm_forward(
        xp, x2, g_, b_, eps, relu, (rm, rv, momentum) if fused_running else None)
    if not fused_running:
        rm *= momentum
        rm += (1 - momentum) * mean.astype(rm.dtype)
        rv *= momentum
        rv += (1 - momentum) * var.astype(rv.dtype)
    y = xp.moveaxis(y2.reshape(mshape), -1, axis)
    need = needs_grad(x, gamma if scale else None, beta if center else None)
    if need is None:
        return _wrap(y, x._ctx)
    gshape = gamma.shape

    def backward(g):
        g2 = _channel_rows(xp, g, axis)[0]
        gx2, dgamma, dbeta = _k.batch_norm_backward(xp, g2, y2, x2, mean, invstd, g_, relu,
                                                    need[0])
        gx = None if gx2 is None else xp.moveaxis(gx2.reshape(mshape), -1, axis)
        return (gx, _shaped(dgamma, gshape) if need[1] else None,
                _shaped(dbeta, gshape) if need[2] else None)
    return record_op(backward, (x, gamma, beta), y, x._ctx,
                     name='batch_norm_relu' if relu else 'batch_norm')


def _shaped(a, shape):
    """``a`` in ``shape``: itself when it has it (a fresh array, which the autograd engine
    can hand to the parameter without copying)."""
    return a if a.shape == tuple(shape) else a.reshape(shape)
