"""Normalization: the shared core of BatchNorm/LayerNorm/InstanceNorm/GroupNorm, and
BatchNorm's training path on channels-last row matrices (optionally fused with a ReLU).

Example::

    y = batch_norm(x, gamma, beta, running_mean, running_var, axis=1, training=True)
"""
import numpy as np

from ..backend.hostpool import map_parts, matmul as _mm, run_parts, worth_splitting
from ._base import _state, _wrap, float_data, needs_grad, norm_axis, record_op, unbroadcast
from ._rows import fold as _fold, relu_values, tile as _tile, widening

__all__ = ['normalize', 'batch_norm']


def normalize(x, gamma, beta, red_axes, param_shape, eps, center=True, scale=True,
              data_shape=None):
    """``(x - mean) / sqrt(var + eps) * gamma + beta`` with biased statistics over
    ``red_axes``; gamma/beta are reshaped to ``param_shape`` to broadcast. The common core
    of BatchNorm (training), LayerNorm, InstanceNorm and GroupNorm.

    ``data_shape`` (optional) views ``x`` in another shape for the statistics (GroupNorm).
    Returns ``(y, mean, var)`` where mean/var are the raw xp arrays (keepdims).
    """
    xp = x.xp
    xd = float_data(x._data)
    in_shape = xd.shape
    if data_shape is not None:
        xd = xd.reshape(data_shape)
    n = 1
    for a in red_axes:
        n *= xd.shape[a]
    mean = xd.mean(axis=red_axes, keepdims=True)
    xc = xd - mean
    var = xp.mean(xp.square(xc), axis=red_axes, keepdims=True)
    inv = 1.0 / xp.sqrt(var + eps)
    xhat = xc * inv
    g_ = gamma._data.reshape(param_shape) if scale else None
    b_ = beta._data.reshape(param_shape) if center else None
    y = xhat * g_ if scale else xhat.copy()
    if center:
        y += b_
    if data_shape is not None:
        y = y.reshape(in_shape)
    need = needs_grad(x, gamma if scale else None, beta if center else None)
    if need is None:
        return _wrap(y, x._ctx), mean, var
    gshape = gamma.shape

    def backward(g):
        if data_shape is not None:
            g = g.reshape(data_shape)
        gx = gg = gb = None
        if need[0]:
            gxhat = g * g_ if scale else g
            m1 = gxhat.mean(axis=red_axes, keepdims=True)
            m2 = (gxhat * xhat).mean(axis=red_axes, keepdims=True)
            gx = (gxhat - m1 - xhat * m2) * inv
            if data_shape is not None:
                gx = gx.reshape(in_shape)
        if need[1]:
            gg = unbroadcast(g * xhat, param_shape).reshape(gshape)
        if need[2]:
            gb = unbroadcast(g, param_shape).reshape(gshape)
        return gx, gg, gb
    out = record_op(backward, (x, gamma, beta), y, x._ctx, name='normalize')
    return out, mean, var


def _channel_rows(xp, d, axis):
    """``d`` with ``axis`` moved last as a C-contiguous (rows, channels) matrix (a view when
    the memory is already channels-last, as convolution outputs are) and the moved shape."""
    moved = xp.moveaxis(d, axis, -1)
    return xp.ascontiguousarray(moved).reshape(-1, moved.shape[-1]), moved.shape


def _batch_norm_rows(x, gamma, beta, axis, eps, center, scale, act=None):
    """Training-mode batch normalization computed on the (rows, channels) matrix of ``x``,
    followed by a ReLU when ``act == 'relu'`` (one op: ``relu(batch_norm(x))``).

    Same numbers as :func:`normalize` over all axes but ``axis``. The matrix is viewed as
    (R/k, k*C) (see ``ops/_rows.py``); per-channel sums are GEMV/einsum row reductions
    folded over the k copies of each channel, and the elementwise passes broadcast tiled
    per-channel vectors along long rows. On the host a large matrix is processed in row
    blocks over the host pool (``backend.hostpool``): the sums as per-block partials
    added in block order, the elementwise passes block by block -- each pass over the
    data is memory-bound, and two cores move it ~1.6x faster than one.

    Statistics: on the host, one pass for ``sum(x)`` and ``sum(x^2)``; E[x^2] - E[x]^2 is
    used only while every channel has ``mean^2 <= 9 var`` (cancellation then costs at most
    ~3 bits of the float32 sums: measured max error 1e-5 on unit-scale outputs at the limit,
    against 1e-6 two-pass); otherwise, and on devices, the centred two-pass variance.
    Forward output ``x * s + (beta - mean * s)`` (then the ReLU, in place); backward
    ``dx = s * (g - mean(g) - xc * inv^2 * mean(g * xc))`` in four passes, with ``xc`` the
    saved centred matrix or ``x - mean`` folded into the per-channel constants, and ``g``
    first masked by ``y > 0`` under a ReLU.
    Returns ``(y, mean, var)`` with ``mean``/``var`` of shape (C,).
    """
    xp = x.xp
    x2, mshape = _channel_rows(xp, float_data(x._data), axis)
    R, C = x2.shape
    dtype = x2.dtype
    k = widening(R, C)
    n = R // k
    xw = x2.reshape(n, k * C)
    ones = xp.ones(n, dtype=dtype)
    relu = act == 'relu'
    split = worth_splitting(xw)

    def each_block(fn):           # fn(lo, hi) over row blocks [lo, hi) of the (n, k*C) matrix
        if split:
            run_parts(fn, n)
        else:
            fn(0, n)

    def summed(fn):               # fn(lo, hi) -> tuple of partial sums; their block-order sum
        parts = map_parts(fn, n) if split else [fn(0, n)]
        total = list(parts[0])
        for p in parts[1:]:
            for i, v in enumerate(p):
                total[i] = total[i] + v
        return total

    def fold(v):                  # (k*C,) partial sums -> (C,)
        return _fold(v, k, C)

    def tile(v):                  # (C,) -> (k*C,)
        return _tile(xp, v, k)

    xs, shift = None, None        # backward's matrix and its per-channel offset from xc
    if xp is np:
        s1, s2 = summed(lambda lo, hi: (_mm(ones[lo:hi], xw[lo:hi]),
                                        xp.einsum('rc,rc->c', xw[lo:hi], xw[lo:hi])))
        mean = fold(s1) / R
        var = fold(s2) / R - mean * mean
        if bool((mean * mean <= 9 * var).all()):
            xs, shift = xw, mean
    else:
        mean = fold(_mm(ones, xw)) / R
    if xs is None:
        xs = xw - tile(mean)
        var = fold(xp.einsum('rc,rc->c', xs, xs)) / R
        shift = xp.zeros_like(mean)
    inv = 1.0 / xp.sqrt(var + eps)
    s = gamma._data.astype(dtype, copy=False) * inv if scale else inv
    offset = -shift * s
    if center:
        offset = offset + beta._data.astype(dtype, copy=False)
    y2 = xp.empty_like(xs)
    ts, to = tile(s), tile(offset)

    def normalize_block(lo, hi):
        yb = y2[lo:hi]
        xp.multiply(xs[lo:hi], ts, out=yb)
        yb += to
        if relu:
            relu_values(xp, yb, out=yb)
    each_block(normalize_block)
    y = xp.moveaxis(y2.reshape(mshape), -1, axis)
    need = needs_grad(x, gamma if scale else None, beta if center else None)
    if need is None:
        return _wrap(y, x._ctx), mean, var
    gshape = gamma.shape

    def backward(g):
        gw = _channel_rows(xp, g, axis)[0].reshape(n, k * C)
        gm = xp.empty_like(gw) if relu else gw      # g masked by the ReLU

        def sums_block(lo, hi):
            gb = gw[lo:hi]
            if relu:
                gb = xp.multiply(gb, y2[lo:hi] > 0, out=gm[lo:hi])
            return _mm(ones[lo:hi], gb), xp.einsum('rc,rc->c', gb, xs[lo:hi])
        sg, sgx = summed(sums_block)
        gb = fold(sg)                                           # sum of g per channel
        # sum of g * xhat = (sum(g * xs) - shift * sum(g)) * inv
        gg = (fold(sgx) - shift * gb) * inv
        gx = None
        if need[0]:
            # dx = s * (g - mean(g) - xhat * mean(g * xhat)), xhat = (xs - shift) * inv
            a = inv * gg / R
            ta, tb = tile(a), tile(gb / R - a * shift)
            t = xp.empty_like(xs)

            def input_grad_block(lo, hi):
                tb_ = t[lo:hi]
                xp.multiply(xs[lo:hi], ta, out=tb_)
                tb_ += tb
                xp.subtract(gm[lo:hi], tb_, out=tb_)
                tb_ *= ts
            each_block(input_grad_block)
            gx = xp.moveaxis(t.reshape(mshape), -1, axis)
        return (gx, gg.reshape(gshape) if need[1] else None,
                gb.reshape(gshape) if need[2] else None)
    return record_op(backward, (x, gamma, beta), y, x._ctx,
                     name='batch_norm_relu' if relu else 'batch_norm'), mean, var


def batch_norm(x, gamma, beta, running_mean, running_var, axis=1, eps=1e-5, momentum=0.9,
               fix_gamma=False, use_global_stats=False, center=True, training=None, act=None):
    """Batch normalization over all axes but ``axis``.

    In training mode (and without ``use_global_stats``) it normalizes with the batch's
    biased statistics and updates the running ones in place:
    ``running = momentum * running + (1 - momentum) * batch``. Otherwise it normalizes with
    the running statistics and never updates them.

    ``act='relu'`` returns ``relu(batch_norm(...))`` -- in training mode as one op (the
    ReLU applied in place to the normalized output and its mask folded into the backward
    pass), which is how ``Sequential`` runs a ``BatchNorm`` followed by
    ``Activation('relu')``.
    """
    if act not in (None, 'relu'):
        raise ValueError(f"batch_norm: act must be None or 'relu', got {act!r}")
    if training is None:
        training = _state.training
    xp = x.xp
    axis = norm_axis(axis, x.ndim, 'BatchNorm')
    C = x.shape[axis]
    if gamma.shape[0] != C:
        raise ValueError(f'BatchNorm: input has {C} channels on axis {axis} (shape {x.shape}) '
                         f'but the layer was built for {gamma.shape[0]}')
    pshape = [1] * x.ndim
    pshape[axis] = C
    pshape = tuple(pshape)
    scale = not fix_gamma
    if training and not use_global_stats:
        y, mean, var = _batch_norm_rows(x, gamma, beta, axis, eps, center, scale, act)
        rm, rv = running_mean._data, running_var._data
        rm *= momentum
        rm += (1 - momentum) * mean.reshape(C).astype(rm.dtype, copy=False)
        rv *= momentum
        rv += (1 - momentum) * var.reshape(C).astype(rv.dtype, copy=False)
        return y
    if act == 'relu':
        from .math import relu
        return relu(batch_norm(x, gamma, beta, running_mean, running_var, axis, eps, momentum,
                               fix_gamma, use_global_stats, center, training))
    # Inference: an affine map with the running statistics.
    xd = float_data(x._data)
    inv = (1.0 / xp.sqrt(running_var._data + eps)).astype(xd.dtype, copy=False)
    g_ = gamma._data if scale else xp.ones_like(inv)
    mul = (g_ * inv).reshape(pshape)
    xhat_shift = running_mean._data.reshape(pshape)
    y = (xd - xhat_shift) * mul
    if center:
        y += beta._data.reshape(pshape)
    need = needs_grad(x, gamma if scale else None, beta if center else None)
    if need is None:
        return _wrap(y, x._ctx)
    gshape = gamma.shape

    def backward(g):
        gx = g * mul if need[0] else None
        gg = unbroadcast(g * (xd - xhat_shift) * inv.reshape(pshape), pshape).reshape(gshape) \
            if need[1] else None
        gb = unbroadcast(g, pshape).reshape(gshape) if need[2] else None
        return gx, gg, gb
    return record_op(backward, (x, gamma, beta), y, x._ctx, name='batch_norm_inference')
