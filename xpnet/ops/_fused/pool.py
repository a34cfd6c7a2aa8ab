"""Pooling on a device: max and average pooling as one kernel each way
(:mod:`xpnet.backend.kernels.pool`; the max-pooling backward is a gather over the kept
arg-max offsets), and global average pooling as one mean forward and one broadcast
backward."""
from ...backend.kernels import pool as _k
from .._base import _wrap, needs_grad, record_op
from .._im2col import from_nsc, prod, to_nsc

__all__ = ['applies', 'max_pool', 'avg_pool', 'global_avg_pool']


def applies(xp, dtype):
    from ...backend.kernels import fused
    return fused(xp, dtype)


def max_pool(data, x, kernel, stride, pad, out, last):
    """Max pooling of the channels-last view ``x`` of ``data``."""
    xp = data.xp
    y, arg = _k.max_pool(xp, x, kernel, stride, pad, out)
    return _record(data, y, last, 'max_pooling', lambda g5: _k.max_pool_backward(
        xp, g5, arg, x.shape, kernel, stride, pad, out, g5.dtype))


def avg_pool(data, x, kernel, stride, pad, out, last, pool_type, count_include_pad):
    """Average (or sum) pooling of the channels-last view ``x`` of ``data``."""
    xp = data.xp
    is_sum = pool_type == 'sum'
    y = _k.avg_pool(xp, x, kernel, stride, pad, out, count_include_pad, is_sum)
    return _record(data, y, last, 'avg_pooling', lambda g5: _k.avg_pool_backward(
        xp, g5, x.shape, kernel, stride, pad, out, count_include_pad, is_sum, g5.dtype))


def _record(data, y, last, name, input_grad):
    """The pooled NDArray (a view of the channels-last ``y``) and its backward: the output
    gradient as a C-contiguous channels-last array to ``input_grad``."""
    xp = data.xp
    result = from_nsc(y, last)
    if needs_grad(data) is None:
        return _wrap(result, data._ctx)

    def backward(g):
        return (from_nsc(input_grad(xp.ascontiguousarray(to_nsc(g, last))), last),)
    return record_op(backward, (data,), result, data._ctx, name=name)


def global_avg_pool(data, x, nd, last, pool_type):
    """Global average (or sum) pooling: one reduction forward, one broadcast backward."""
    xp = data.xp
    N, C = x.shape[0], x.shape[-1]
    P = prod(x.shape[1:-1])
    flat = x.reshape(N, P, C)
    y = flat.sum(axis=1) if pool_type == 'sum' else flat.mean(axis=1)
    result = from_nsc(y.reshape((N,) + (1,) * nd + (C,)), last)
    if needs_grad(data) is None:
        return _wrap(result, data._ctx)
    scale = x.dtype.type(1.0 if pool_type == 'sum' else 1.0 / P)
    shape = x.shape

    def backward(g):
        gx = xp.empty(shape, dtype=g.dtype)
        xp.multiply(to_nsc(g, last), scale, out=gx)         # broadcast over the window
        return (from_nsc(gx, last),)
    return record_op(backward, (data,), result, data._ctx, name='global_avg_pooling')
