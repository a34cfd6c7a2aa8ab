"""Pooling on a device: max and average pooling as one kernel each way
(:mod:`xpnet.backend.kernels.pool`; the max-pooling backward is a gather over the kept
arg-max offsets), and global average pooling as one mean forward and one broadcast
backward. Each returns ``(output, backward)`` on channels-last (N, *S, C) arrays, as the
paths of :mod:`xpnet.ops.pool` (the op converts layouts)."""
from ...backend.kernels import pool as _k
from .._im2col import prod

__all__ = ['applies', 'max_pool', 'avg_pool', 'global_avg_pool']


def applies(xp, dtype):
    from ...backend.kernels import fused
    return fused(xp, dtype)


def max_pool(xp, x, kernel, stride, pad, out, want_grad):
    """Max pooling of the channels-last view ``x``: ``(y, backward(g) -> gx)``, both
    C-contiguous channels-last."""
    y, arg = _k.max_pool(xp, x, kernel, stride, pad, out)
    if not want_grad:
        return y, None
    return y, lambda g: _k.max_pool_backward(xp, g, arg, x.shape, kernel, stride, pad, out,
                                             g.dtype)


def avg_pool(xp, x, kernel, stride, pad, out, pool_type, count_include_pad, want_grad):
    """Average (or sum) pooling of the channels-last view ``x`` (as :func:`max_pool`)."""
    is_sum = pool_type == 'sum'
    y = _k.avg_pool(xp, x, kernel, stride, pad, out, count_include_pad, is_sum)
    if not want_grad:
        return y, None
    return y, lambda g: _k.avg_pool_backward(xp, g, x.shape, kernel, stride, pad, out,
                                             count_include_pad, is_sum, g.dtype)


def global_avg_pool(xp, x, pool_type, want_grad):
    """Global average (or sum) pooling of the channels-last view ``x``: one reduction
    forward, one broadcast backward."""
    N, C = x.shape[0], x.shape[-1]
    P = prod(x.shape[1:-1])
    flat = x.reshape(N, P, C)
    y = flat.sum(axis=1) if pool_type == 'sum' else flat.mean(axis=1)
    y = y.reshape((N,) + (1,) * (x.ndim - 2) + (C,))
    if not want_grad:
        return y, None
    scale = x.dtype.type(1.0 if pool_type == 'sum' else 1.0 / P)

    def backward(g):
        gx = xp.empty(x.shape, dtype=g.dtype)
        xp.multiply(g, scale, out=gx)                  # broadcast over the window
        return gx
    return y, backward
