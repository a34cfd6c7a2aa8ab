"""Softmax family, activation functions and dropout.

Each op computes its forward once against ``xp`` and keeps only what its backward needs
(ReLU, sigmoid and tanh are elementwise math in ``ops/math.py``; ``activation`` dispatches
to them by MXNet's names).

Example::

    p = softmax(logits, axis=-1)
    y = leaky_relu(x, alpha=0.1)
"""
import numpy as np

from .. import random as _random
from ..backend.kernels import fused as _use_fused
from ._base import (_state, _wrap, float_data, needs_grad, norm_axis, record_op, same_ctx,
                    tracked, unbroadcast)
from .math import _sigmoid

__all__ = ['softmax', 'log_softmax', 'leaky_relu', 'prelu', 'elu', 'selu', 'gelu', 'swish',
           'softrelu', 'softsign', 'activation', 'dropout']


def softmax(x, axis=-1, temperature=None):
    """Softmax along ``axis`` (numerically stable); ``temperature`` divides the input."""
    xp = x.xp
    xd = float_data(x._data)
    axis = norm_axis(axis, xd.ndim, 'softmax')
    if temperature is not None and temperature != 1:
        xd = xd / temperature
    y = xd - xd.max(axis=axis, keepdims=True)
    xp.exp(y, out=y)
    y /= y.sum(axis=axis, keepdims=True)
    if not tracked(x):
        return _wrap(y, x._ctx)
    t = 1.0 if temperature is None else float(temperature)

    def backward(g):
        gy = g * y
        gx = gy - y * gy.sum(axis=axis, keepdims=True)
        return (gx / t if t != 1.0 else gx,)
    return record_op(backward, (x,), y, x._ctx, name='softmax')


def log_softmax(x, axis=-1, temperature=None):
    """log(softmax(x)) along ``axis``, computed stably."""
    xp = x.xp
    xd = float_data(x._data)
    axis = norm_axis(axis, xd.ndim, 'log_softmax')
    if temperature is not None and temperature != 1:
        xd = xd / temperature
    y = xd - xd.max(axis=axis, keepdims=True)
    y -= xp.log(xp.exp(y).sum(axis=axis, keepdims=True))
    if not tracked(x):
        return _wrap(y, x._ctx)
    t = 1.0 if temperature is None else float(temperature)

    def backward(g):
        gx = g - xp.exp(y) * g.sum(axis=axis, keepdims=True)
        return (gx / t if t != 1.0 else gx,)
    return record_op(backward, (x,), y, x._ctx, name='log_softmax')


# ---- parametrized activations -----------------------------------------------------------

def leaky_relu(x, alpha=0.01):
    """``x`` if ``x > 0`` else ``alpha * x``."""
    xp = x.xp
    xd = x._data
    pos = xd > 0
    y = xp.where(pos, xd, xd * alpha)
    if not tracked(x):
        return _wrap(y, x._ctx)
    return record_op(lambda g: (xp.where(pos, g, g * alpha),), (x,), y, x._ctx,
                     name='leaky_relu')


def prelu(x, alpha, axis=1):
    """Leaky ReLU with a learned slope ``alpha`` (one per channel along ``axis``, or shared)."""
    xp = x.xp
    same_ctx(x, alpha, 'prelu')
    xd, ad = x._data, alpha._data
    if ad.size == 1:
        a = ad.reshape(())
    else:
        shape = [1] * xd.ndim
        shape[norm_axis(axis, xd.ndim)] = ad.size
        a = ad.reshape(shape)
    pos = xd > 0
    y = xp.where(pos, xd, xd * a)
    need = needs_grad(x, alpha)
    if need is None:
        return _wrap(y, x._ctx)
    ashape = ad.shape

    def backward(g):
        gx = xp.where(pos, g, g * a) if need[0] else None
        ga = None
        if need[1]:
            gneg = xp.where(pos, 0, g * xd)
            ga = gneg.sum().reshape(ashape) if ad.size == 1 else \
                unbroadcast(gneg, a.shape).reshape(ashape)
        return gx, ga
    return record_op(backward, (x, alpha), y, x._ctx, name='prelu')


def elu(x, alpha=1.0):
    """``x`` if ``x > 0`` else ``alpha * (exp(x) - 1)``."""
    xp = x.xp
    xd = float_data(x._data)
    pos = xd > 0
    em1 = xp.expm1(xp.minimum(xd, 0))
    y = xp.where(pos, xd, alpha * em1)
    if not tracked(x):
        return _wrap(y, x._ctx)
    return record_op(lambda g: (xp.where(pos, g, g * (alpha * (em1 + 1))),), (x,), y, x._ctx,
                     name='elu')


_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_LAMBDA = 1.0507009873554804934193349852946


def selu(x):
    """Scaled ELU with the standard constants; gradient ``lambda*alpha*exp(x)`` for x <= 0."""
    xp = x.xp
    xd = float_data(x._data)
    pos = xd > 0
    # expm1, not exp - 1: MXNet's kernel, exact to a rounding step near 0
    em1 = xp.expm1(xp.minimum(xd, 0))
    y = _SELU_LAMBDA * xp.where(pos, xd, _SELU_ALPHA * em1)
    if not tracked(x):
        return _wrap(y.astype(xd.dtype, copy=False), x._ctx)
    y = y.astype(xd.dtype, copy=False)
    return record_op(
        lambda g: (xp.where(pos, g * _SELU_LAMBDA,
                            g * (_SELU_LAMBDA * _SELU_ALPHA) * (em1 + 1)),),
        (x,), y, x._ctx, name='selu')


def gelu(x):
    """Exact GELU: ``x * Phi(x)`` with the Gaussian CDF written with erf."""
    from ..backend.special import erf
    xp = x.xp
    xd = float_data(x._data)
    cdf = 0.5 * (1.0 + erf(xp, xd * np.float32(1 / np.sqrt(2))))
    cdf = cdf.astype(xd.dtype, copy=False)
    y = xd * cdf
    if not tracked(x):
        return _wrap(y, x._ctx)
    c = xd.dtype.type(1 / np.sqrt(2 * np.pi))
    return record_op(lambda g: (g * (cdf + xd * c * xp.exp(-0.5 * xd * xd)),), (x,), y,
                     x._ctx, name='gelu')


def swish(x, beta=1.0):
    """``x * sigmoid(beta * x)``."""
    xp = x.xp
    xd = float_data(x._data)
    s = _sigmoid(xp, xd * beta if beta != 1.0 else xd)
    y = xd * s
    if not tracked(x):
        return _wrap(y, x._ctx)
    return record_op(lambda g: (g * (s + beta * y * (1 - s)),), (x,), y, x._ctx, name='swish')


def softrelu(x):
    """Softplus ``log(1 + exp(x))``, computed without overflow."""
    xp = x.xp
    xd = float_data(x._data)
    y = xp.maximum(xd, 0) + xp.log1p(xp.exp(-xp.abs(xd)))
    if not tracked(x):
        return _wrap(y, x._ctx)
    return record_op(lambda g: (g * _sigmoid(xp, xd),), (x,), y, x._ctx, name='softrelu')


def softsign(x):
    """``x / (1 + |x|)``."""
    xp = x.xp
    xd = float_data(x._data)
    d = 1 + xp.abs(xd)
    y = xd / d
    if not tracked(x):
        return _wrap(y, x._ctx)
    return record_op(lambda g: (g / (d * d),), (x,), y, x._ctx, name='softsign')


def activation(x, act_type):
    """MXNet's Activation op: 'relu', 'sigmoid', 'tanh', 'softrelu' or 'softsign'."""
    from . import math as _m
    fn = {'relu': _m.relu, 'sigmoid': _m.sigmoid, 'tanh': _m.tanh, 'softrelu': softrelu,
          'softsign': softsign}.get(act_type)
    if fn is None:
        raise ValueError(f"activation: unknown act_type {act_type!r}; expected one of "
                         "'relu', 'sigmoid', 'tanh', 'softrelu', 'softsign'")
    return fn(x)


# ---- dropout ------------------------------------------------------------------------------

def dropout(x, p=0.5, axes=(), training=None):
    """Inverted dropout: zero each element with probability ``p`` and scale the rest by
    1/(1-p). Active only in training mode (``autograd.is_training()``) unless ``training``
    is given. ``axes`` share one mask value along those axes (variational dropout)."""
    if training is None:
        training = _state.training
    if not training or p <= 0:
        return x
    if p >= 1:
        from .math import multiply
        return multiply(x, 0.0)
    xp = x.xp
    xd = x._data
    mshape = tuple(1 if i in {norm_axis(a, xd.ndim) for a in axes} else s
                   for i, s in enumerate(xd.shape))
    if _use_fused(xp, xd.dtype):       # the mask drawn on the device, one kernel each way
        from ._fused import dropout as _device, record
        return record(_device.dropout(xp, xd, p, mshape, tracked(x)), (x,), x._ctx,
                      'dropout')
    u = _random.uniform_array(mshape, x._ctx, dtype=xd.dtype if xd.dtype.kind == 'f'
                              else np.float32)
    mask = xp.where(u >= p, xd.dtype.type(1.0 / (1.0 - p)), xd.dtype.type(0))
    y = xd * mask
    if not tracked(x):
        return _wrap(y, x._ctx)
    return record_op(lambda g: (g * mask,), (x,), y, x._ctx, name='dropout')
