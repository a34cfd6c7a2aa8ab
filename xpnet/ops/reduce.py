"""Reductions (sum, mean, max, min, prod, norm) and arg-reductions."""
import builtins

import numpy as np

from ._base import _wrap, norm_axes, record_op, tracked

__all__ = ['sum', 'mean', 'max', 'min', 'prod', 'norm', 'argmax', 'argmin', 'argsort', 'topk',
           'sum_axes']


def _arr(xp, y):
    """NumPy reductions to a scalar return a NumPy scalar; keep arrays arrays."""
    return xp.asarray(y) if isinstance(y, np.generic) else y


def _expand(g, in_shape, axes, keepdims):
    """Reshape a reduced gradient so it broadcasts against the input."""
    if not keepdims and axes:
        shape = list(in_shape)
        for a in axes:
            shape[a] = 1
        g = g.reshape(shape)
    return g


def sum_axes(x, axes, keepdims=False):
    """Sum over a normalized tuple of axes (differentiable)."""
    xd = x._data
    xp = x.xp
    y = _arr(xp, xd.sum(axis=axes, keepdims=keepdims) if axes else xd.copy())
    if not tracked(x):
        return _wrap(y, x._ctx)
    shape = xd.shape
    return record_op(lambda g: (xp.broadcast_to(_expand(g, shape, axes, keepdims), shape),),
                     (x,), y, x._ctx, name='sum')


def sum(x, axis=None, keepdims=False, exclude=False):
    """Sum over ``axis`` (None: all; ``exclude=True``: all but ``axis``)."""
    axes = norm_axes(axis, x.ndim, exclude, 'sum')
    return sum_axes(x, axes, keepdims)


def mean(x, axis=None, keepdims=False, exclude=False):
    """Mean over ``axis`` (None: all; ``exclude=True``: all but ``axis``)."""
    axes = norm_axes(axis, x.ndim, exclude, 'mean')
    xd = x._data
    xp = x.xp
    if xd.dtype.kind != 'f':
        xd = xd.astype(np.float32)
    n = 1
    for a in axes:
        n *= xd.shape[a]
    y = _arr(xp, xd.mean(axis=axes, keepdims=keepdims) if axes else xd.copy())
    if not tracked(x):
        return _wrap(y, x._ctx)
    shape = xd.shape
    scale = 1.0 / builtins.max(n, 1)
    return record_op(
        lambda g: (xp.broadcast_to(_expand(g * scale, shape, axes, keepdims), shape),),
        (x,), y, x._ctx, name='mean')


def _extreme(x, axis, keepdims, exclude, fn, name):
    axes = norm_axes(axis, x.ndim, exclude, name)
    xd = x._data
    xp = x.xp
    if xd.size == 0:
        raise ValueError(f'{name}: zero-size array has no {name}imum')
    y = _arr(xp, getattr(xd, fn)(axis=axes, keepdims=keepdims) if axes else xd.copy())
    if not tracked(x):
        return _wrap(y, x._ctx)
    shape = xd.shape

    def backward(g):
        yk = _expand(y, shape, axes, keepdims)
        mask = xd == yk
        return (xp.where(mask, _expand(g, shape, axes, keepdims), 0).astype(xd.dtype),)
    return record_op(backward, (x,), y, x._ctx, name=name)


def max(x, axis=None, keepdims=False, exclude=False):
    """Maximum over ``axis``; the gradient goes to every element equal to the maximum."""
    return _extreme(x, axis, keepdims, exclude, 'max', 'max')


def min(x, axis=None, keepdims=False, exclude=False):
    """Minimum over ``axis``; the gradient goes to every element equal to the minimum."""
    return _extreme(x, axis, keepdims, exclude, 'min', 'min')


def prod(x, axis=None, keepdims=False, exclude=False):
    """Product over ``axis`` (gradient y/x, exact for inputs without zeros)."""
    axes = norm_axes(axis, x.ndim, exclude, 'prod')
    xd = x._data
    xp = x.xp
    y = _arr(xp, xd.prod(axis=axes, keepdims=keepdims) if axes else xd.copy())
    if not tracked(x):
        return _wrap(y, x._ctx)
    shape = xd.shape
    return record_op(lambda g: (_expand(g * y, shape, axes, keepdims) / xd,), (x,), y, x._ctx,
                     name='prod')


def norm(x, ord=2, axis=None, keepdims=False):
    """The L2 (or L1) norm over ``axis`` (all elements by default)."""
    from . import math as _m
    if ord == 1:
        return sum(_m.abs(x), axis=axis, keepdims=keepdims)
    if ord != 2:
        raise ValueError(f'norm: ord must be 1 or 2, got {ord}')
    return _m.sqrt(sum(_m.square(x), axis=axis, keepdims=keepdims))


def _arg(x, axis, keepdims, fn):
    xd = x._data
    if axis is None:
        idx = getattr(xd.reshape(-1), fn)()
        out = idx.reshape((1,) * xd.ndim) if keepdims else idx
    else:
        out = getattr(xd, fn)(axis=axis)
        if keepdims:
            out = x.xp.expand_dims(out, axis)
    dtype = xd.dtype if xd.dtype.kind == 'f' else np.float32
    return _wrap(x.xp.asarray(out).astype(dtype), x._ctx)


def argmax(x, axis=None, keepdims=False):
    """Index of the maximum along ``axis``, as floats in the input's dtype (MXNet's rule)."""
    return _arg(x, axis, keepdims, 'argmax')


def argmin(x, axis=None, keepdims=False):
    """Index of the minimum along ``axis``, as floats in the input's dtype (MXNet's rule)."""
    return _arg(x, axis, keepdims, 'argmin')


def argsort(x, axis=-1, is_ascend=True):
    """Indices that sort ``x`` along ``axis`` (float32, as MXNet)."""
    xd = x._data if is_ascend else -x._data
    return _wrap(x.xp.argsort(xd, axis=axis, kind='stable').astype(np.float32), x._ctx)


def topk(x, axis=-1, k=1, ret_typ='indices', is_ascend=False):
    """The ``k`` largest (or smallest) entries along ``axis``: indices, values or both."""
    xp = x.xp
    idx = xp.argsort(x._data if is_ascend else -x._data, axis=axis, kind='stable')
    idx = xp.take(idx, xp.arange(k), axis=axis)
    if ret_typ == 'indices':
        return _wrap(idx.astype(np.float32), x._ctx)
    from .index import take_along_axis
    vals = take_along_axis(x, _wrap(idx, x._ctx), axis)
    if ret_typ == 'value':
        return vals
    if ret_typ == 'both':
        return [vals, _wrap(idx.astype(np.float32), x._ctx)]
    raise ValueError(f"topk: ret_typ must be 'indices', 'value' or 'both', got {ret_typ!r}")
