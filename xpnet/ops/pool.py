"""N-d max / average / sum pooling over the convolution core's channels-last windows.

Pooling is separable: a window max (or sum) is computed one spatial axis at a time, innermost
first, as the max over the kernel offsets of strided views, with the arg-max offset of each
1-D pass kept for the backward pass. Ties go to the first maximum in row-major window order,
as in MXNet.

Pooling conventions (MXNet 1.9 semantics unless said):

- ``ceil_mode=True`` uses ``out = ceil((x + 2p - k) / s) + 1`` and keeps a last window
  that may start in the right padding or past it. MXNet returns ``-FLT_MAX`` for a max
  window holding no input element; **xpnet returns 0 there (and passes no gradient)**.
- Average pooling divides by the window clipped to the padded extent
  (``count_include_pad=True``) or by the number of real input elements
  (``count_include_pad=False``); a window with nothing to count gives 0.

Example::

    z = pooling(y, kernel=(2, 2), pool_type='max')
    g = pooling(y, pool_type='avg', global_pool=True)          # (N, C, 1, 1)
"""
import numpy as np

from ._base import _wrap, int_tuple, needs_grad, record_op
from ..backend.hostpool import matmul as _mm, run_parts, worth_splitting
from ..backend.memory import scratch
from ._im2col import check_rank, from_nsc, normalize_layout, pad_nsc, prod, to_nsc

__all__ = ['pooling', 'pool_output_size']


def pool_output_size(size, kernel, stride, pad, ceil_mode=False):
    """Spatial output size of pooling: floor (or ceil) of ``(x + 2p - k) / s``, plus 1."""
    if ceil_mode:
        return tuple(-(-(x + 2 * p - k) // s) + 1 for x, k, s, p in zip(size, kernel, stride, pad))
    return tuple((x + 2 * p - k) // s + 1 for x, k, s, p in zip(size, kernel, stride, pad))


def _pool_args(data, kernel, stride, pad, layout, global_pool, op):
    if layout is None:
        nd = data.ndim - 2 if isinstance(kernel, (int, np.integer)) or kernel is None \
            else len(tuple(kernel))
        last = False
    else:
        nd, last = normalize_layout(layout, None, op)
    if nd < 1 or nd > 3:
        raise ValueError(f'{op}: pooling supports 1 to 3 spatial axes, got input shape '
                         f'{data.shape}')
    check_rank(data, nd, layout, op)
    if global_pool:
        return nd, last, None, None, None
    kernel = int_tuple(kernel, nd, 'pool_size', op, 1)
    stride = kernel if stride is None else int_tuple(stride, nd, 'strides', op, 1)
    pad = int_tuple(pad, nd, 'padding', op, 0)
    return nd, last, kernel, stride, pad


def _divisor(xp, size, kernel, stride, pad, out, count_include_pad, dtype):
    """Average-pooling divisor per output position, shaped (*out, 1) to broadcast over
    (N, *out, C); a Python float when it is the same everywhere."""
    per_dim = []
    constant = True
    for x, k, s, p, o in zip(size, kernel, stride, pad, out):
        start = np.arange(o) * s - p
        if count_include_pad:
            cnt = np.minimum(start + k, x + p) - start
        else:
            cnt = np.minimum(start + k, x) - np.maximum(start, 0)
        cnt = np.maximum(cnt, 0)
        if not (cnt == k).all():
            constant = False
        per_dim.append(cnt)
    if constant:
        return float(prod(kernel))
    div = per_dim[0].astype(np.float64)
    for c in per_dim[1:]:
        div = np.multiply.outer(div, c)
    div[div == 0] = 1        # an empty window sums to 0; dividing by 1 keeps it 0
    return xp.asarray(div.astype(dtype)[..., None])


def _crop(pad, size):
    return (slice(None),) + tuple(slice(p, p + s) for p, s in zip(pad, size))


def pooling(data, kernel=1, stride=None, pad=0, pool_type='max', ceil_mode=False,
            count_include_pad=True, layout=None, global_pool=False, name=None):
    """N-d max / average / sum pooling (MXNet's ``Pooling``).

    Args:
        data: ``(N, C, *spatial)`` (or channels-last with ``layout``).
        kernel: window size, int or one per spatial axis.
        stride: step (None: the window size).
        pad: symmetric padding; ignored by max pooling, zeros for average pooling.
        pool_type: 'max', 'avg' or 'sum'.
        ceil_mode: ceil instead of floor in the output size (MXNet's 'full' convention).
        count_include_pad: average pooling divides by the padded window size (True) or by
            the number of input elements in the window (False).
        layout: 'NCW', 'NWC', 'NCHW', 'NHWC', 'NCDHW', 'NDHWC' or None (channels-first).
        global_pool: pool over the whole spatial extent (output spatial size 1).
        name: the layer name used in error messages.

    See the module docstring for the border conventions.

    Example::

        y = pooling(x, kernel=3, stride=2, pad=1, pool_type='max')
    """
    op = name or 'Pooling'
    if pool_type not in ('max', 'avg', 'sum'):
        raise ValueError(f"{op}: pool_type must be 'max', 'avg' or 'sum', got {pool_type!r}")
    nd, last, kernel, stride, pad = _pool_args(data, kernel, stride, pad, layout, global_pool,
                                               op)
    xp = data.xp
    x = to_nsc(data._data, last)
    from ._fused import pool as _device
    device = _device.applies(xp, x.dtype)
    want = needs_grad(data) is not None
    if global_pool:
        if device and pool_type != 'max':
            return _record_device(data, _device.global_avg_pool(xp, x, pool_type, want),
                                  last, 'global_avg_pooling')
        return _global_pool(data, xp, x, nd, last, pool_type)
    size = x.shape[1:-1]
    for s, k, p in zip(size, kernel, pad):
        if k > s + 2 * p:
            raise ValueError(f'{op}: pool_size {kernel} is larger than the padded input '
                             f'{tuple(q + 2 * r for q, r in zip(size, pad))} (input shape '
                             f'{data.shape}, padding {pad})')
        if p >= k:
            raise ValueError(f'{op}: padding {pad} must be smaller than pool_size {kernel}')
    out = pool_output_size(size, kernel, stride, pad, ceil_mode)
    if device:                  # one kernel forward, one backward
        if pool_type == 'max':
            return _record_device(data, _device.max_pool(xp, x, kernel, stride, pad, out,
                                                         want), last, 'max_pooling')
        return _record_device(data, _device.avg_pool(xp, x, kernel, stride, pad, out,
                                                     pool_type, count_include_pad, want),
                              last, 'avg_pooling')
    window = _Windows(kernel, stride, pad, size, out)
    if pool_type == 'max':
        return _max_pool(data, x, window, last)
    return _sum_pool(data, x, window, last, pool_type, count_include_pad)


def _record_device(data, result, last, name):
    """The NDArray of a device path's channels-last ``(y, backward)`` (the backward takes
    and gives C-contiguous channels-last arrays)."""
    y, backward = result
    xp = data.xp
    if backward is None:
        return _wrap(from_nsc(y, last), data._ctx)
    return record_op(lambda g: (from_nsc(backward(xp.ascontiguousarray(to_nsc(g, last))),
                                         last),),
                     (data,), from_nsc(y, last), data._ctx, name=name)


class _Windows:
    """The windows of one pooling: kernel, stride, padding, the input and output sizes, the
    padded extent they read, and the spatial axes in reduction order (innermost first:
    a window reduction is separable, ``sum(k)`` strided passes instead of ``prod(k)``)."""

    def __init__(self, kernel, stride, pad, size, out):
        self.kernel, self.stride, self.pad, self.size, self.out = kernel, stride, pad, size, out
        self.extent = tuple(max(s + 2 * p, (o - 1) * st + k)
                            for s, p, o, st, k in zip(size, pad, out, stride, kernel))
        self.axes = list(range(len(kernel) - 1, -1, -1))

    def along(self, ndim, d):
        """Index tuples of the kernel offsets along spatial axis ``d`` (see
        :func:`_axis_windows`)."""
        return _axis_windows(ndim, d, self.kernel[d], self.stride[d], self.out[d])

    def grad_buffer(self, xp, shape, dtype, d):
        return _grad_buffer(xp, shape, dtype, d, self.kernel[d], self.stride[d], self.out[d])


def _max_pool(data, x, win, last):
    """Max pooling, one spatial axis at a time. For each 1-D window the first maximum is
    kept, which is the first maximum of the whole window in row-major order (the smallest
    row holding one, then its smallest column). Every pass writes into a buffer of the
    whole batch (``backend.memory``); on the host a large input is pooled in batch blocks
    over the host pool (each block runs the whole separable chain, forward or backward:
    one hand-off for several passes)."""
    xp = data.xp
    fill = -np.inf if x.dtype.kind == 'f' else np.iinfo(x.dtype).min
    need = needs_grad(data)
    N = x.shape[0]
    shapes = _pass_shapes(win, N, x.shape[-1])          # the input of each pass, then the output
    bests = [scratch.empty(xp, s, x.dtype) for s in shapes[1:]]
    args = [scratch.empty(xp, s, _arg_dtype(win.kernel[d]))
            for d, s in zip(win.axes, shapes[1:])] if need is not None else None

    def forward_part(lo, hi):
        cur = pad_nsc(xp, x[lo:hi], win.pad, win.extent, fill)
        for j, d in enumerate(win.axes):
            _max_along(xp, cur, win.along(cur.ndim, d), bests[j][lo:hi],
                       None if args is None else args[j][lo:hi])
            cur = bests[j][lo:hi]
    split = worth_splitting(x)
    if split:
        run_parts(forward_part, N)
    else:
        forward_part(0, N)
    cur = bests[-1]
    del bests[:-1]                      # (the passes' scratch goes back to the pool)
    # Ceil-mode windows holding no input element start in (or past) the right padding.
    for axis, (n, s, p, sz) in enumerate(zip(win.out, win.stride, win.pad, win.size), 1):
        first_empty = next((o for o in range(n) if o * s - p >= sz), n)
        if first_empty < n:
            cur[(slice(None),) * axis + (slice(first_empty, None),)] = 0
    result = from_nsc(cur, last)
    if need is None:
        return _wrap(result, data._ctx)

    def backward(g):
        g = to_nsc(g, last)
        grads = [scratch.empty(xp, s, g.dtype) for s in shapes[:-1]]

        def backward_part(lo, hi):
            gp = g[lo:hi]
            for j in reversed(range(len(win.axes))):
                d = win.axes[j]
                gin = grads[j][lo:hi]
                if not _tiles_exactly(gin.shape, d, win.kernel[d], win.stride[d],
                                      win.out[d]):
                    gin[...] = 0            # (positions no window reads get no gradient)
                _scatter_max(xp, gp, args[j][lo:hi], gin, win.along(gin.ndim, d),
                             win.stride[d] >= win.kernel[d])
                gp = gin
        if split:
            run_parts(backward_part, N)
        else:
            backward_part(0, N)
        return (from_nsc(grads[0][_crop(win.pad, win.size)], last),)
    return record_op(backward, (data,), result, data._ctx, name='max_pooling')


def _pass_shapes(win, N, C):
    """The shapes the separable passes read and write: the padded input, then the output
    of each pass (the last is the pooling's output)."""
    shape = (N,) + tuple(win.extent) + (C,)
    shapes = [shape]
    for d in win.axes:
        shape = shape[:1 + d] + (win.out[d],) + shape[2 + d:]
        shapes.append(shape)
    return shapes


def _arg_dtype(k):
    """The arg-max offsets of a k-wide window: bool for two (offset 1 won), else
    uint8/int32."""
    return np.bool_ if k == 2 else (np.uint8 if k < 256 else np.int32)


def _sum_pool(data, x, win, last, pool_type, count_include_pad):
    """Average or sum pooling: window sums one spatial axis at a time, then the divisor."""
    xp = data.xp
    cur = pad_nsc(xp, x, win.pad, win.extent, 0)
    if cur.dtype.kind != 'f':
        cur = cur.astype(np.float32)
    shapes = []
    for d in win.axes:
        shapes.append(cur.shape)
        wins = win.along(cur.ndim, d)
        total = cur[wins[0]].copy()
        for w in wins[1:]:
            total += cur[w]
        cur = total
    div = 1.0 if pool_type == 'sum' else _divisor(xp, win.size, win.kernel, win.stride,
                                                  win.pad, win.out, count_include_pad,
                                                  cur.dtype)
    scalar = isinstance(div, float)
    if scalar and div != 1.0:
        cur *= 1.0 / div
    elif not scalar:
        cur /= div
    result = from_nsc(cur, last)
    if needs_grad(data) is None:
        return _wrap(result, data._ctx)

    def backward_avg(g):
        g = to_nsc(g, last)
        if scalar:
            g = g * (1.0 / div) if div != 1.0 else g
        else:
            g = g / div
        for d, shape in zip(win.axes[::-1], shapes[::-1]):
            gin = win.grad_buffer(xp, shape, g.dtype, d)
            for w in win.along(len(shape), d):
                if win.stride[d] >= win.kernel[d]:
                    gin[w] = g
                else:
                    gin[w] += g
            g = gin
        return (from_nsc(g[_crop(win.pad, win.size)], last),)
    return record_op(backward_avg, (data,), result, data._ctx, name='avg_pooling')


def _max_along(xp, cur, wins, best, arg):
    """Running maximum over the windows ``wins`` of one axis into ``best``, and (if ``arg``
    is not None) the offset of the first maximum into ``arg`` (see :func:`_arg_dtype`).
    Ties keep the first offset: a later one wins only where it is strictly greater."""
    k = len(wins)
    if k == 1:
        best[...] = cur[wins[0]]
        if arg is not None:
            arg[...] = 0
        return
    v0, v1 = cur[wins[0]], cur[wins[1]]
    xp.maximum(v0, v1, out=best)
    if arg is not None:
        xp.greater(v1, v0, out=arg)
    later = scratch.empty(xp, best.shape, np.bool_) if arg is not None and k > 2 else None
    for j in range(2, k):
        v = cur[wins[j]]
        if arg is not None:
            xp.copyto(arg, j, where=xp.greater(v, best, out=later))
        xp.maximum(best, v, out=best)


def _scatter_max(xp, g, arg, gin, wins, disjoint):
    """Backward of :func:`_max_along`: ``g`` to the arg-max offset of each window, into
    ``gin`` (assigned when the windows are ``disjoint``, else accumulated). A product with
    the mask, not where() (much slower here); only a non-finite g differs: NaN instead of
    0 beside the arg-max."""
    mask = scratch.empty(xp, arg.shape, np.bool_)
    hit = None if disjoint else scratch.empty(xp, g.shape, g.dtype)
    for j, win in enumerate(wins):
        if arg.dtype == np.bool_:
            m = xp.logical_not(arg, out=mask) if j == 0 else arg
        else:
            m = xp.equal(arg, j, out=mask)
        if disjoint:
            xp.multiply(g, m, out=gin[win])
        else:
            gin[win] += xp.multiply(g, m, out=hit)


def _tiles_exactly(shape, d, k, s, o):
    """Whether the windows along axis ``d`` of ``shape`` cover it exactly once (every
    element of a gradient buffer is then assigned by the scatter)."""
    return s == k and shape[1 + d] == o * s


def _grad_buffer(xp, shape, dtype, d, k, s, o):
    """The gradient buffer of one separable pooling step: uninitialized when the windows
    tile it exactly, zeros otherwise."""
    if _tiles_exactly(shape, d, k, s, o):
        return scratch.empty(xp, shape, dtype)
    return scratch.zeros(xp, shape, dtype)


def _axis_windows(ndim, d, k, s, o):
    """Index tuples selecting, for each offset j < k along spatial axis ``d`` of an
    (N, *S, C) array, the element of every output position."""
    lead = (slice(None),) * (1 + d)
    return [lead + (slice(j, j + s * (o - 1) + 1, s),) for j in range(k)]


def _global_pool(data, xp, x, nd, last, pool_type):
    N, C = x.shape[0], x.shape[-1]
    P = prod(x.shape[1:-1])
    keep = (N,) + (1,) * nd + (C,)
    flat = x.reshape(N, P, C)
    need = needs_grad(data)
    if pool_type == 'max':
        arg = flat.argmax(axis=1)                                  # first maximum
        y = xp.take_along_axis(flat, arg[:, None, :], axis=1).reshape(keep)
        result = from_nsc(y, last)
        if need is None:
            return _wrap(result, data._ctx)

        def backward(g):
            g = to_nsc(g, last).reshape(N, 1, C)
            hit = xp.arange(P).reshape(1, P, 1) == arg[:, None, :]
            gx = xp.where(hit, g, 0).astype(g.dtype, copy=False).reshape(x.shape)
            return (from_nsc(gx, last),)
        return record_op(backward, (data,), result, data._ctx, name='global_max_pooling')
    if flat.dtype.kind == 'f':
        total = _mm(xp.ones(P, dtype=flat.dtype), flat)     # N GEMVs: 3x a sum()
    else:
        total = flat.sum(axis=1, dtype=np.float32)
    scale = 1.0 if pool_type == 'sum' else 1.0 / P
    y = (total * scale if scale != 1.0 else total).reshape(keep)
    result = from_nsc(y, last)
    if need is None:
        return _wrap(result, data._ctx)

    def backward_avg(g):
        g = to_nsc(g, last)
        gx = xp.broadcast_to(g * scale if scale != 1.0 else g, x.shape)
        return (from_nsc(gx, last),)
    return record_op(backward_avg, (data,), result, data._ctx, name='global_avg_pooling')
