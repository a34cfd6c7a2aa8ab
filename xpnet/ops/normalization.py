"""Normalization: the shared core of BatchNorm/LayerNorm/InstanceNorm/GroupNorm, and
BatchNorm's training path on channels-last row matrices (optionally fused with a ReLU).

Example::

    y = batch_norm(x, gamma, beta, running_mean, running_var, axis=1, training=True)
"""
import numpy as np

from ..backend.hostpool import (SPLIT_BYTES, fixed_parts, map_parts, matmul as _mm, run_parts,
                                worth_splitting)
from ..backend.memory import scratch
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
    return scratch.contiguous(xp, moved).reshape(-1, moved.shape[-1]), moved.shape


class _RowBlocks:
    """A channels-last (R, C) matrix viewed as (R/k, k*C) (see ``ops/_rows.py``), and its
    processing in row blocks: on the host a large matrix is processed in row blocks over
    the host pool (``backend.hostpool``) -- each pass over the data is memory-bound, and
    two cores move it faster than one."""

    def __init__(self, xp, x2):
        self.xp = xp
        self.R, self.C = R, C = x2.shape
        self.k = k = widening(R, C)
        self.n = R // k
        self.wide = x2.reshape(self.n, k * C)
        self.ones = xp.ones(self.n, dtype=x2.dtype)
        self.split = worth_splitting(self.wide)

    def each(self, fn):
        """``fn(lo, hi)`` over row blocks ``[lo, hi)`` of the (R/k, k*C) matrix."""
        if self.split:
            run_parts(fn, self.n)
        else:
            fn(0, self.n)

    def summed(self, fn):
        """The block-order sum of ``fn(lo, hi)``'s tuples of partial sums. The blocks
        depend on the matrix's size only, so the sums are the same on any thread count."""
        if self.split:
            parts = map_parts(fn, self.n, fixed_parts(self.wide.nbytes, SPLIT_BYTES, self.n))
        else:
            parts = [fn(0, self.n)]
        total = list(parts[0])
        for p in parts[1:]:
            for i, v in enumerate(p):
                total[i] = total[i] + v
        return total

    def column_sums(self, block):
        """Per-column sums of a block of rows (a GEMV)."""
        return _mm(self.ones[:block.shape[0]], block)

    def fold(self, v):
        """(k*C,) per-column sums -> (C,) per-channel sums."""
        return _fold(v, self.k, self.C)

    def tile(self, v):
        """(C,) -> (k*C,)."""
        return _tile(self.xp, v, self.k)


def _row_statistics(rows):
    """``(mean, var, xs, shift)`` of the row matrix: ``xs`` is the matrix the normalization
    reads (the data itself, or its centred copy) and ``shift`` the per-channel mean still
    to subtract from it (0 for the centred copy).

    On the host, one pass for ``sum(x)`` and ``sum(x^2)``; E[x^2] - E[x]^2 is used only
    while every channel has ``mean^2 <= 9 var`` (cancellation then costs at most ~3 bits
    of the float32 sums); otherwise, and on devices, the centred two-pass variance."""
    xp, xw, R = rows.xp, rows.wide, rows.R
    if xp is np:
        s1, s2 = rows.summed(lambda lo, hi: (rows.column_sums(xw[lo:hi]),
                                             xp.einsum('rc,rc->c', xw[lo:hi], xw[lo:hi])))
        mean = rows.fold(s1) / R
        var = rows.fold(s2) / R - mean * mean
        if bool((mean * mean <= 9 * var).all()):
            return mean, var, xw, mean
    else:
        mean = rows.fold(_mm(rows.ones, xw)) / R
    xs = xp.subtract(xw, rows.tile(mean), out=scratch.empty_like(xw))
    var = rows.fold(xp.einsum('rc,rc->c', xs, xs)) / R
    return mean, var, xs, xp.zeros_like(mean)


def _batch_norm_rows(x, gamma, beta, axis, eps, center, scale, act=None):
    """Training-mode batch normalization computed on the (rows, channels) matrix of ``x``,
    followed by a ReLU when ``act == 'relu'`` (one op: ``relu(batch_norm(x))``).

    Same numbers as :func:`normalize` over all axes but ``axis``. The matrix is viewed as
    (R/k, k*C) (:class:`_RowBlocks`); per-channel sums are GEMV/einsum row reductions
    folded over the k copies of each channel, and the elementwise passes broadcast tiled
    per-channel vectors along long rows; the statistics are :func:`_row_statistics`.
    Forward output ``x * s + (beta - mean * s)`` (then the ReLU, in place); backward
    ``dx = s * (g - mean(g) - xc * inv^2 * mean(g * xc))`` in four passes, with ``xc`` the
    saved centred matrix or ``x - mean`` folded into the per-channel constants, and ``g``
    first masked by ``y > 0`` under a ReLU.
    Returns ``(y, mean, var)`` with ``mean``/``var`` of shape (C,).
    """
    xp = x.xp
    x2, mshape = _channel_rows(xp, float_data(x._data), axis)
    rows = _RowBlocks(xp, x2)
    dtype = x2.dtype
    relu = act == 'relu'
    mean, var, xs, shift = _row_statistics(rows)
    inv = 1.0 / xp.sqrt(var + eps)
    s = gamma._data.astype(dtype, copy=False) * inv if scale else inv
    offset = -shift * s
    if center:
        offset = offset + beta._data.astype(dtype, copy=False)
    y2 = scratch.empty_like(xs)
    ts, to = rows.tile(s), rows.tile(offset)

    def normalize_block(lo, hi):
        yb = y2[lo:hi]
        xp.multiply(xs[lo:hi], ts, out=yb)
        yb += to
        if relu:
            relu_values(xp, yb, out=yb)
    rows.each(normalize_block)
    y = xp.moveaxis(y2.reshape(mshape), -1, axis)
    need = needs_grad(x, gamma if scale else None, beta if center else None)
    if need is None:
        return _wrap(y, x._ctx), mean, var
    gshape = gamma.shape

    def backward(g):
        gx, gg, gb = _batch_norm_rows_backward(rows, _channel_rows(xp, g, axis)[0], xs, shift,
                                               inv, ts, y2 if relu else None, need[0])
        if gx is not None:
            gx = xp.moveaxis(gx.reshape(mshape), -1, axis)
        return (gx, gg.reshape(gshape) if need[1] else None,
                gb.reshape(gshape) if need[2] else None)
    return record_op(backward, (x, gamma, beta), y, x._ctx,
                     name='batch_norm_relu' if relu else 'batch_norm'), mean, var


def _batch_norm_rows_backward(rows, g2, xs, shift, inv, ts, y2, need_x):
    """``(gx as (R/k, k*C) or None, sum(g * xhat), sum(g))`` of :func:`_batch_norm_rows`
    for the output gradient's row matrix ``g2``; ``y2`` is the ReLU's output (its mask) or
    None."""
    xp, R = rows.xp, rows.R
    gw = g2.reshape(rows.n, -1)
    gm = scratch.empty_like(gw) if y2 is not None else gw      # g masked by the ReLU
    mask = scratch.empty(xp, gw.shape, np.bool_) if y2 is not None else None

    def sums_block(lo, hi):
        gb = gw[lo:hi]
        if y2 is not None:
            gb = xp.multiply(gb, xp.greater(y2[lo:hi], 0, out=mask[lo:hi]), out=gm[lo:hi])
        return rows.column_sums(gb), xp.einsum('rc,rc->c', gb, xs[lo:hi])
    sg, sgx = rows.summed(sums_block)
    gb = rows.fold(sg)                                           # sum of g per channel
    # sum of g * xhat = (sum(g * xs) - shift * sum(g)) * inv
    gg = (rows.fold(sgx) - shift * gb) * inv
    if not need_x:
        return None, gg, gb
    # dx = s * (g - mean(g) - xhat * mean(g * xhat)), xhat = (xs - shift) * inv
    a = inv * gg / R
    ta, tb = rows.tile(a), rows.tile(gb / R - a * shift)
    t = scratch.empty_like(xs)

    def input_grad_block(lo, hi):
        tb_ = t[lo:hi]
        xp.multiply(xs[lo:hi], ta, out=tb_)
        tb_ += tb
        xp.subtract(gm[lo:hi], tb_, out=tb_)
        tb_ *= ts
    rows.each(input_grad_block)
    return t, gg, gb


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
        from ._fused import norm as _device, record
        if _device.applies(x, gamma):        # two kernels forward, two backward
            need = needs_grad(x, gamma if scale else None, beta if center else None)
            return record(_device.batch_norm_train(
                xp, float_data(x._data), gamma._data if scale else None,
                beta._data if center else None, running_mean._data, running_var._data,
                axis, eps, momentum, act, need), (x, gamma, beta), x._ctx,
                'batch_norm_relu' if act == 'relu' else 'batch_norm', need=need)
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
