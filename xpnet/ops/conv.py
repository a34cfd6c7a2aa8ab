"""The N-d convolution and pooling core: one implementation for 1-D, 2-D and 3-D, both layouts.

Everything here computes on a *channels-last* view of the data, ``(N, *spatial, C)``: a
channels-first ``(N, C, *S)`` array and a channels-last one are both views of it, so layouts
cost nothing at the entry. The building blocks are

- :func:`im2col`: the windows of the (padded) input as a ``(groups, N * prod(out),
  prod(K) * C/groups)`` matrix, made by one strided copy of a window view (rows are output
  positions, columns run over kernel offsets then channels, so the innermost copied runs are
  ``k_w * C`` contiguous numbers);
- :func:`col2im`: its adjoint, one strided accumulation of a contiguous slab per kernel
  offset (loops run over kernel offsets only, never over batch elements or positions);
- one matrix multiply per group, with the weight as a ``(out/groups, prod(K) * in/groups)``
  matrix.

A convolution is im2col + GEMM. Its input gradient -- and a transposed convolution, which is
the same computation -- runs one kernel offset at a time: a GEMM gives that offset's columns
as a contiguous ``(N * prod(out), C)`` slab, which col2im adds into place. A stride-1
"same" layer that does not widen the channels instead runs it as a convolution with the
flipped kernel (im2col + GEMM again), which moves less memory there. Results are
returned as views of channels-last buffers (logical shape ``(N, C, *S)`` for channels-first
layouts), so the next convolution, pooling or elementwise op reads them without a
transposing copy.

Two fast paths, chosen by shape (both exact in the gradient, both tested against the
generic path):

- 3x3, stride 1, undilated 2-D convolutions with at least 16 input and output channels run
  Winograd F(4x4, 3x3) (``xpnet/ops/winograd.py``): 2.25x fewer multiplies, and a 9.4 MB
  transformed input instead of the 37.7 MB column matrix for CIFAR's 32->32 layer;
- an input with few channels in channels-first memory (an image batch: ``k_w * C < 16``)
  is unfolded to the transposed column matrix by :func:`im2col_channels_first`, whose copies
  run along image rows instead of ``k_w * C`` numbers.

Memory: the unfolded input is exactly the GEMM operand, ``N * prod(out) * prod(K) * C``
numbers (37.7 MB for a 3x3 convolution of 32 channels at 32x32, batch 32; the Winograd path
keeps a quarter of that, 9.4 MB), kept for the weight gradient; the input gradient needs
one slab (``1/prod(K)`` of that) at a time, or in the flipped case a column matrix of the
output gradient. Column matrices come from a small pool of reusable host buffers
(``backend.memory.scratch``), and the first host convolution sets glibc's allocator
thresholds (``backend.memory.prime_host_allocator``): without either, every training step
page-faults its large temporaries back in.

Threads (``backend/hostpool.py``): on the host, products go through the pool's
:func:`~xpnet.backend.hostpool.matmul` (split when large, never waking OpenBLAS's own
threads), the Winograd path and the channels-first unfolding run in batch parts, and a
convolution's weight and bias gradients are computed by a background job while the
backward pass continues through the layers before it (the autograd engine waits for them
when it writes the parameters' gradients).

Pooling (``xpnet/ops/pool.py``) uses the same channels-last views and windows.

Example::

    y = convolution(x, w, b, stride=2, pad=1)                  # x (N, C, H, W), w (O, C, 3, 3)
    u = deconvolution(z, wt, stride=2, output_padding=1)       # wt (C_in, C_out, kh, kw)
"""
import itertools

import numpy as np

from ..backend import hostpool
from ..backend.hostpool import matmul as _mm, run_parts, worth_splitting
from ..backend.memory import prime_host_allocator, scratch
from ._base import _wrap, int_tuple, needs_grad, record_op, same_ctx
from ._rows import add_channel_vector, channel_sum
from ..autograd import grad_retained
from .winograd import use_winograd, winograd_backward, winograd_forward

__all__ = ['convolution', 'deconvolution', 'pooling', 'im2col', 'im2col_channels_first', 'col2im',
           'conv_output_size', 'deconv_output_size', 'pool_output_size', 'normalize_layout',
           'deformable_convolution', 'modulated_deformable_convolution']

_LAYOUTS = {
    'NCW': (1, False), 'NWC': (1, True),
    'NCHW': (2, False), 'NHWC': (2, True),
    'NCDHW': (3, False), 'NDHWC': (3, True),
}


# ---- argument handling ---------------------------------------------------------------------

def _tuple(value, nd, what, op, minimum):
    """An int or sequence as a tuple of ``nd`` ints, each >= ``minimum``."""
    return int_tuple(value, nd, what, op, minimum)


def normalize_layout(layout, nd, op='Convolution'):
    """``(nd, channels_last)`` of a layout string (``None`` means channels-first)."""
    if layout is None:
        return nd, False
    try:
        lnd, last = _LAYOUTS[layout]
    except KeyError:
        raise ValueError(f'{op}: unknown layout {layout!r}; expected one of '
                         f'{", ".join(_LAYOUTS)}') from None
    if nd is not None and lnd != nd:
        raise ValueError(f'{op}: layout {layout!r} is for {lnd}-D data but the kernel is '
                         f'{nd}-D')
    return lnd, last


def _check_rank(data, nd, layout, op):
    if data.ndim != nd + 2:
        lay = layout or 'NC' + 'DHW'[3 - nd:]
        raise ValueError(f'{op}: expected a {nd + 2}-D input for layout {lay} '
                         f'(batch, channels and {nd} spatial axes), got shape {data.shape}')


def _to_nsc(d, last):
    """(N, C, *S) (or already (N, *S, C)) -> an (N, *S, C) view."""
    if last:
        return d
    return d.transpose((0,) + tuple(range(2, d.ndim)) + (1,))


def _from_nsc(d, last):
    """(N, *S, C) -> an (N, C, *S) view (or itself for channels-last layouts)."""
    if last:
        return d
    return d.transpose((0, d.ndim - 1) + tuple(range(1, d.ndim - 1)))


def _prod(values):
    out = 1
    for v in values:
        out *= int(v)
    return out


# ---- sizes ---------------------------------------------------------------------------------

def conv_output_size(size, kernel, stride, pad, dilate):
    """Spatial output size of a convolution: ``floor((x + 2p - d(k-1) - 1) / s) + 1``."""
    return tuple((x + 2 * p - d * (k - 1) - 1) // s + 1
                 for x, k, s, p, d in zip(size, kernel, stride, pad, dilate))


def deconv_output_size(size, kernel, stride, pad, dilate, output_padding):
    """Spatial output size of a transposed convolution:
    ``(x - 1) s - 2p + d(k - 1) + output_padding + 1``."""
    return tuple((x - 1) * s - 2 * p + d * (k - 1) + a + 1
                 for x, k, s, p, d, a in zip(size, kernel, stride, pad, dilate, output_padding))


# ---- windows -------------------------------------------------------------------------------

def _window(offset, stride, dilate, out):
    """Slices selecting, for one kernel offset, the input element of every output position."""
    return tuple(slice(k * d, k * d + s * (o - 1) + 1, s)
                 for k, s, d, o in zip(offset, stride, dilate, out))


def _pad_nsc(xp, x, before, extent, value=0):
    """(N, *S, C) -> a C-contiguous (N, *extent, C) buffer holding ``x`` after ``before``
    elements of ``value`` on each spatial axis (``x`` itself when nothing changes).
    ``before`` may be negative (the input is then cropped)."""
    size = x.shape[1:-1]
    if all(b == 0 for b in before) and tuple(extent) == tuple(size) and x.flags.c_contiguous:
        return x
    shape = (x.shape[0],) + tuple(extent) + (x.shape[-1],)
    buf = xp.empty(shape, dtype=x.dtype)
    dst, src = [], []
    for b, s, e in zip(before, size, extent):
        lo, hi = max(b, 0), min(b + s, e)
        dst.append(slice(lo, hi))
        src.append(slice(lo - b, hi - b))
    full = (slice(None),)
    buf[full + tuple(dst) + full] = x[full + tuple(src) + full]
    # fill only the border slabs: the interior was just written
    for axis, d in enumerate(dst, 1):
        lead = (slice(None),) * axis
        if d.start > 0:
            buf[lead + (slice(0, d.start),)] = value
        if d.stop < shape[axis]:
            buf[lead + (slice(d.stop, None),)] = value
    return buf


def _as_strided(xp, x, shape, strides):
    try:
        return xp.lib.stride_tricks.as_strided(x, shape, strides)
    except AttributeError:        # an array module without stride tricks
        return None


def im2col(xp, x, kernel, stride, pad, dilate, out, groups=1):
    """Windows of the channels-last input ``x`` (N, *S, C) as a ``(groups, N*prod(out),
    prod(K)*C/groups)`` matrix: row = output position, column = (kernel offset, channel).

    ``pad`` may be negative (the input is cropped first)."""
    N, C = x.shape[0], x.shape[-1]
    size = x.shape[1:-1]
    nd = len(size)
    Cg = C // groups
    M = N * _prod(out)
    if groups == 1 and all(k == 1 for k in kernel) and all(s == 1 for s in stride) \
            and not any(pad) and tuple(out) == tuple(size):
        return xp.ascontiguousarray(x).reshape(1, M, C)     # a 1x1 convolution: no windows
    extent = tuple(max(s + 2 * p, (o - 1) * st + (k - 1) * d + 1)
                   for s, p, o, st, k, d in zip(size, pad, out, stride, kernel, dilate))
    xpad = _pad_nsc(xp, x, pad, extent)
    st = xpad.strides
    shape = (groups, N) + tuple(out) + tuple(kernel) + (Cg,)
    strides = (Cg * st[-1], st[0]) + tuple(st[1 + i] * stride[i] for i in range(nd)) + \
        tuple(st[1 + i] * dilate[i] for i in range(nd)) + (st[-1],)
    view = _as_strided(xp, xpad, shape, strides)
    col = scratch.take(xp, shape, x.dtype)
    if view is not None:
        col[...] = view
        return col.reshape(groups, M, _prod(kernel) * Cg)
    # fallback for array modules without stride tricks: one copy per kernel offset
    xg = xpad.reshape(xpad.shape[:-1] + (groups, Cg))
    lead = (slice(None),) * (2 + nd)
    for k in itertools.product(*map(range, kernel)):
        src = xg[(slice(None),) + _window(k, stride, dilate, out)]
        col[lead + k] = xp.moveaxis(src, -2, 0)
    return col.reshape(groups, M, _prod(kernel) * Cg)


def _unfold_channels_first(xd, last, groups, C, kernel, out):
    """Whether to unfold a channels-first input with :func:`im2col_channels_first`: few
    channels per kernel row (``k_w * C < 16``, so channels-last columns would be copied in
    runs shorter than 16 numbers) and the data really in channels-first memory."""
    return (not last and groups == 1 and kernel[-1] * C < 16 and out[-1] > kernel[-1] * C
            and xd.flags.c_contiguous)


def im2col_channels_first(xp, x, kernel, stride, pad, dilate, out, col=None):
    """Windows of a C-contiguous channels-first input ``x`` (N, C, *S) as the transposed
    column matrix ``(C * prod(K), N * prod(out))`` -- row = (channel, kernel offset), column
    = output position, so each copied run is a row of output positions. Its rows are in the
    order of a channels-first weight (O, C, *K) reshaped to (O, C * prod(K)).

    ``col``: write into this ``(C, *K, N, *out)`` array (a view into a larger matrix)
    instead, and return it."""
    N, C = x.shape[:2]
    size = x.shape[2:]
    nd = len(size)
    extent = tuple(max(s + 2 * p, (o - 1) * st + (k - 1) * d + 1)
                   for s, p, o, st, k, d in zip(size, pad, out, stride, kernel, dilate))
    # pad every (sample, channel) plane: _pad_nsc pads the middle axes of (N*C, *S, 1)
    xpad = _pad_nsc(xp, x.reshape((N * C,) + tuple(size) + (1,)), pad, extent)
    xpad = xpad.reshape((N, C) + extent)
    st = xpad.strides
    shape = (C,) + tuple(kernel) + (N,) + tuple(out)
    strides = (st[1],) + tuple(st[2 + i] * dilate[i] for i in range(nd)) + (st[0],) + \
        tuple(st[2 + i] * stride[i] for i in range(nd))
    view = xp.lib.stride_tricks.as_strided(xpad, shape, strides)
    if col is not None:
        col[...] = view
        return col
    col = scratch.take(xp, shape, x.dtype)
    col[...] = view
    return col.reshape(C * _prod(kernel), N * _prod(out))


def col2im(xp, cols, N, size, kernel, stride, pad, dilate, out):
    """Adjoint of :func:`im2col`, taking the columns kernel-offset-major: ``cols`` is
    ``(G, prod(K), N*prod(out), Cg)`` and the result the channels-last image
    ``(N, *size, G*Cg)``. One strided accumulation of a contiguous slab per kernel offset."""
    return _col2im_slabs(xp, lambda i: cols[:, i], cols.shape[0], cols.shape[3], cols.dtype,
                         N, size, kernel, stride, pad, dilate, out)


def _col2im_slabs(xp, slab, G, Cg, dtype, N, size, kernel, stride, pad, dilate, out):
    """col2im with the columns of kernel offset ``i`` given by ``slab(i)`` (G, M, Cg), so
    that they can be computed one offset at a time and never held all at once."""
    reach = tuple(max(s + 2 * p, (o - 1) * st + (k - 1) * d + 1)
                  for s, p, o, st, k, d in zip(size, pad, out, stride, kernel, dilate))
    buf = xp.zeros((N,) + reach + (G, Cg), dtype=dtype)
    disjoint = all(s >= (k - 1) * d + 1 for s, k, d in zip(stride, kernel, dilate))
    for i, k in enumerate(itertools.product(*map(range, kernel))):
        win = (slice(None),) + _window(k, stride, dilate, out)
        src = slab(i).transpose(1, 0, 2).reshape((N,) + tuple(out) + (G, Cg))
        if disjoint:
            buf[win] = src
        else:
            buf[win] += src
    crop = (slice(None),) + tuple(slice(p, p + s) for p, s in zip(pad, size))
    return buf[crop].reshape((N,) + tuple(size) + (G * Cg,))


# ---- the two convolution computations ---------------------------------------------------------

def _gemm(xp, col, wm):
    """Per group: ``col[g] (M, Kc) @ wm[g].T (Kc, Og)``; -> (M, G*Og)."""
    if col.shape[0] == 1:
        return _mm(col[0], wm[0].T)
    y = _mm(col, wm.transpose(0, 2, 1))                 # (G, M, Og)
    return y.transpose(1, 0, 2).reshape(col.shape[1], -1)


def _weight_matrix(w, last):
    """A (channels-first or -last) weight (A, B, *K) as the GEMM matrix (A, prod(K) * B):
    a convolution's (O, Cg, *K) gives (O, K*Cg); a transposed convolution's (Cin, Og, *K)
    gives (Cin, K*Og), the matrix of the convolution it transposes."""
    if not last:
        w = w.transpose((0,) + tuple(range(2, w.ndim)) + (1,))
    return w.reshape(w.shape[0], -1)


def _conv_nsc(xp, x, wm, kernel, stride, pad, dilate, out, groups, keep_col=False):
    """y (N, *out, O) = convolution of channels-last ``x`` with ``wm`` (G, Og, K*Cg)."""
    col = im2col(xp, x, kernel, stride, pad, dilate, out, groups)
    y = _gemm(xp, col, wm).reshape((x.shape[0],) + tuple(out) + (-1,))
    if keep_col:
        return y, col
    scratch.give(col)
    return y, None


def _conv_transpose_nsc(xp, g, wm, size, kernel, stride, pad, dilate, out, groups):
    """The adjoint of :func:`_conv_nsc` in its input: ``g`` (N, *out, G*Og) -> (N, *size,
    G*Cg). For each kernel offset one GEMM gives that offset's columns as a contiguous
    (G, N*prod(out), Cg) slab (reusing one buffer), which col2im accumulates at once."""
    N = g.shape[0]
    G = groups
    Kp = _prod(kernel)
    M = N * _prod(out)
    Og = wm.shape[1]
    Cg = wm.shape[2] // Kp
    if all(s == 1 for s in stride) and _prod(size) <= 1.05 * _prod(out) and Og <= Cg:
        # A stride-1 "same" transposed convolution that does not widen the channels is a
        # convolution with the flipped kernel: one im2col + one GEMM moves less memory than
        # prod(K) slabs and strided adds (measured: 8.3 vs 9.6 ms, CIFAR's 32->32 layer).
        tpad = tuple(d * (k - 1) - p for k, p, d in zip(kernel, pad, dilate))
        y, _ = _conv_nsc(xp, g, _flipped(wm, Kp), kernel, (1,) * len(kernel), tpad, dilate,
                         size, G)
        return y
    g2 = xp.ascontiguousarray(g).reshape(M, G, Og).transpose(1, 0, 2)      # (G, M, Og)
    # wm (G, Og, K*Cg) -> (K, G, Og, Cg): per kernel offset and group an (Og, Cg) block
    wk = xp.ascontiguousarray(wm.reshape(G, Og, Kp, Cg).transpose(2, 0, 1, 3))
    dtype = np.result_type(g2.dtype, wk.dtype)
    tmp = xp.empty((G, M, Cg), dtype=dtype)

    def slab(i):
        return hostpool.threaded_matmul(g2, wk[i], out=tmp)
    return _col2im_slabs(xp, slab, G, Cg, dtype, N, size, kernel, stride, pad, dilate, out)


def _flipped(wm, Kp):
    """(G, Og, K*Cg) -> (G, Cg, K*Og) with the kernel offsets reversed (every spatial axis
    flipped): the weight of a stride-1 transposed convolution seen as a convolution."""
    G, Og = wm.shape[:2]
    w4 = wm.reshape(G, Og, Kp, -1)[:, :, ::-1, :]
    return w4.transpose(0, 3, 2, 1).reshape(G, -1, Kp * Og)


def _weight_grad(xp, g, col, groups):
    """(G, Og, K*Cg) = per group ``g[:, group].T @ col[group]``; g (N, *out, G*Og)."""
    M = col.shape[1]
    g2 = xp.ascontiguousarray(g).reshape(M, -1)
    if groups == 1:
        return _mm(g2.T, col[0]).reshape(1, g2.shape[1], -1)
    gg = g2.reshape(M, groups, -1).transpose(1, 2, 0)             # (G, Og, M)
    return _mm(gg, col)


def _channel_sum(xp, g):
    """Sum of a channels-last (N, *S, C) array over everything but C (a GEMV: several
    times faster than a multi-axis reduction)."""
    return channel_sum(xp, g)


def _weight_from_matrix(gm, shape_cf, last):
    """(A, K*B) gradient matrix -> the weight's own layout ((A, B, *K) or (A, *K, B))."""
    A, B = shape_cf[:2]
    kernel = tuple(shape_cf[2:])
    g = gm.reshape((A,) + kernel + (B,))
    if last:
        return g
    return g.transpose((0, g.ndim - 1) + tuple(range(1, g.ndim - 1)))


# A weight gradient of fewer multiply-adds than this is computed at once: starting a
# background job and waiting for it costs ~0.1 ms (a ConvLSTM's 16x16 convolutions, batch 8,
# ran 2x slower with every gradient in the background).
BACKGROUND_MIN_MACS = 16 << 20


def _in_background(xp, fn, need_w, need_b, macs):
    """``fn()``'s pair (weight gradient, bias gradient), on the host computed by a
    background job while the backward pass goes on (the autograd engine waits for them
    only when it writes the leaves' gradients): a convolution's weight gradient is off the
    critical path, and the elementwise backward passes of the layers before it leave a
    core idle. Device arrays, small products (``macs`` multiply-adds) and a host without a
    second thread compute them now."""
    if not (need_w or need_b):
        return None, None
    if xp is not np or macs < BACKGROUND_MIN_MACS:
        return fn()
    value = hostpool.defer(fn)
    if hostpool.is_deferred(value):
        return value.part(0) if need_w else None, value.part(1) if need_b else None
    return value


# ---- convolution ---------------------------------------------------------------------------

def _conv_args(data, weight, bias, stride, pad, dilate, groups, layout, op):
    same_ctx(data, weight, op)
    if bias is not None:
        same_ctx(data, bias, op)
    nd, last = normalize_layout(layout, weight.ndim - 2 if layout is None else None, op)
    if weight.ndim != nd + 2:
        raise ValueError(f'{op}: weight must be {nd + 2}-D for layout {layout or "NC..."}, '
                         f'got shape {weight.shape}')
    _check_rank(data, nd, layout, op)
    stride = _tuple(stride, nd, 'stride', op, 1)
    pad = _tuple(pad, nd, 'pad', op, 0)
    dilate = _tuple(dilate, nd, 'dilate', op, 1)
    groups = int(groups)
    if groups < 1:
        raise ValueError(f'{op}: groups must be >= 1, got {groups}')
    wshape = weight.shape
    # (A, B, *K) whatever the layout: A = first axis, B = the per-group channel axis
    shape_cf = (wshape[0], wshape[-1]) + tuple(wshape[1:-1]) if last else tuple(wshape)
    return nd, last, stride, pad, dilate, groups, shape_cf


def _input_data(data, wd):
    xd = data._data
    if xd.dtype != wd.dtype:
        xd = xd.astype(wd.dtype)
    return xd


def convolution(data, weight, bias=None, stride=1, pad=0, dilate=1, groups=1, layout=None,
                name=None):
    """N-d convolution (cross-correlation, as in every framework) with Gluon's weight layout.

    Args:
        data: ``(N, C, *spatial)`` (channels-first) or ``(N, *spatial, C)`` (channels-last).
        weight: ``(channels, C/groups, *kernel)``; for channels-last layouts
            ``(channels, *kernel, C/groups)``.
        bias: ``(channels,)`` or None.
        stride, pad, dilate: int or one int per spatial axis (``pad`` is symmetric zero
            padding).
        groups: input and output channels split into this many independent groups.
        layout: 'NCW', 'NWC', 'NCHW', 'NHWC', 'NCDHW', 'NDHWC' or None (channels-first with
            ``weight.ndim - 2`` spatial axes).
        name: the layer name used in error messages.

    Returns:
        ``(N, channels, *out)`` (or channels-last) with
        ``out = floor((x + 2p - d(k-1) - 1) / s) + 1``.

    Example::

        y = convolution(x, w, b, stride=1, pad=1)       # 3x3 "same" convolution
    """
    op = name or 'Convolution'
    nd, last, stride, pad, dilate, groups, wshape = _conv_args(
        data, weight, bias, stride, pad, dilate, groups, layout, op)
    xp = data.xp
    prime_host_allocator(xp)
    wd = weight._data
    x = _to_nsc(_input_data(data, wd), last)
    C = x.shape[-1]
    size = x.shape[1:-1]
    O, Cg = wshape[:2]
    kernel = wshape[2:]
    if C != Cg * groups:
        raise ValueError(f'{op}: input has {C} channels (shape {data.shape}) but the weight '
                         f'{weight.shape} with groups={groups} expects {Cg * groups}')
    if O % groups:
        raise ValueError(f'{op}: {O} output channels are not divisible by groups={groups}')
    if bias is not None and bias.shape != (O,):
        raise ValueError(f'{op}: bias shape {bias.shape} does not match {O} output channels')
    for s, k, p, d in zip(size, kernel, pad, dilate):
        if d * (k - 1) + 1 > s + 2 * p:
            raise ValueError(
                f'{op}: kernel {tuple(kernel)} (dilation {dilate}) is larger than the padded '
                f'input {tuple(q + 2 * r for q, r in zip(size, pad))} (input shape '
                f'{data.shape}, padding {pad})')
    out = conv_output_size(size, kernel, stride, pad, dilate)
    wm = _weight_matrix(wd, last).reshape(groups, O // groups, -1)
    need = needs_grad(data, weight, bias)
    in_dtype = data.dtype
    if use_winograd(xp, kernel, stride, dilate, groups, C, O, x.dtype):
        y, saved = winograd_forward(xp, x, wm[0], None if bias is None else bias._data,
                                    pad, out, keep=(bool(need and need[0]),
                                                    bool(need and need[1])))
        result = _from_nsc(y, last)
        if need is None:
            return _wrap(result, data._ctx)

        def backward_winograd(g):
            g = xp.ascontiguousarray(_to_nsc(g, last))
            gx, weight_grad = winograd_backward(xp, g, saved, need[0], need[1])
            if gx is not None:
                gx = _from_nsc(gx, last)
                if gx.dtype != in_dtype:
                    gx = gx.astype(in_dtype)

            def parameter_grads():
                return (_weight_from_matrix(weight_grad(), wshape, last) if need[1] else None,
                        _channel_sum(xp, g) if need[2] else None)
            tiles = x.shape[0] * -(-out[0] // 4) * -(-out[1] // 4)
            return (gx,) + _in_background(xp, parameter_grads, need[1], need[2],
                                          36 * tiles * C * O)
        return record_op(backward_winograd, (data, weight, bias), result, data._ctx,
                         need=need, name='convolution')
    keep = need is not None and need[1]
    xcf = _input_data(data, wd)
    unfold_cf = _unfold_channels_first(xcf, last, groups, C, kernel, out)
    b = None if bias is None else bias._data.astype(np.result_type(xcf.dtype, wd.dtype),
                                                    copy=False)
    if unfold_cf:
        # few input channels in channels-first memory (an image batch): unfold to the
        # transposed column matrix, whose copies run along image rows; on the host in
        # batch blocks over the host pool (unfold, product and bias in one hand-off)
        # The bias rides in the product: a row of ones under the columns and the bias under
        # the weight (no pass over the output; the weight gradient's product then gives the
        # bias gradient as its last column).
        N, P, CK = xcf.shape[0], _prod(out), C * _prod(kernel)
        col = scratch.take(xp, (CK + (b is not None), N * P), xcf.dtype)
        col_nd = col[:CK].reshape((C,) + tuple(kernel) + (N,) + tuple(out))
        y = xp.empty((N,) + tuple(out) + (O,), dtype=np.result_type(xcf.dtype, wd.dtype))
        wT = wd.reshape(O, -1).T
        if b is not None:
            wT = xp.concatenate([wT, b.reshape(1, O).astype(wT.dtype, copy=False)])

        def unfold_part(lo, hi):
            im2col_channels_first(xp, xcf[lo:hi], kernel, stride, pad, dilate, out,
                                  col=col_nd[(slice(None),) * (1 + nd) + (slice(lo, hi),)])
            if b is not None:
                col[CK, lo * P:hi * P] = 1
            _mm(col[:, lo * P:hi * P].T, wT, out=y[lo:hi].reshape(-1, O))
        if xp is np and worth_splitting(col):
            run_parts(unfold_part, N)
        else:
            unfold_part(0, N)
        if not keep:
            scratch.give(col)
    else:
        y, col = _conv_nsc(xp, x, wm, kernel, stride, pad, dilate, out, groups, keep_col=keep)
        if b is not None:
            add_channel_vector(xp, y, b)
    result = _from_nsc(y, last)
    if need is None:
        return _wrap(result, data._ctx)

    macs = x.shape[0] * _prod(out) * O * _prod(kernel) * Cg     # of the weight gradient

    def backward(g):
        g = xp.ascontiguousarray(_to_nsc(g, last))      # once, for every product below
        gx = None
        retained = grad_retained()

        def parameter_grads():
            gw = gb = None
            if need[1]:
                if unfold_cf:
                    gm = _mm(g.reshape(-1, O).T, col.T)     # (O, CK [+ 1: the bias])
                    gw = gm[:, :CK].reshape(wshape)
                    if gm.shape[1] > CK and need[2]:
                        gb = xp.ascontiguousarray(gm[:, CK])
                else:
                    gw = _weight_from_matrix(_weight_grad(xp, g, col, groups), wshape, last)
                if not retained:
                    scratch.give(col)     # this graph is freed after this call
            if need[2] and gb is None:
                gb = _channel_sum(xp, g)
            return gw, gb
        if not need[0]:
            return (None,) + _in_background(xp, parameter_grads, need[1], need[2], macs)
        gx = _conv_transpose_nsc(xp, g, wm, size, kernel, stride, pad, dilate, out, groups)
        gx = _from_nsc(gx, last)
        if gx.dtype != in_dtype:
            gx = gx.astype(in_dtype)
        return (gx,) + _in_background(xp, parameter_grads, need[1], need[2], macs)
    return record_op(backward, (data, weight, bias), result, data._ctx, need=need,
                     name='convolution')


def deconvolution(data, weight, bias=None, stride=1, pad=0, dilate=1, groups=1,
                  output_padding=0, layout=None, name=None):
    """N-d transposed convolution (the gradient of :func:`convolution` w.r.t. its input).

    Args:
        data: ``(N, C_in, *spatial)`` (or channels-last).
        weight: ``(C_in, channels/groups, *kernel)`` as in Gluon; channels-last layouts
            ``(C_in, *kernel, channels/groups)``.
        bias: ``(channels,)`` or None.
        stride, pad, dilate, output_padding: int or one per spatial axis.
        groups, layout, name: as in :func:`convolution`.

    Returns:
        ``(N, channels, *out)`` with ``out = (x-1)s - 2p + d(k-1) + output_padding + 1``.
    """
    op = name or 'Deconvolution'
    nd, last, stride, pad, dilate, groups, wshape = _conv_args(
        data, weight, bias, stride, pad, dilate, groups, layout, op)
    output_padding = _tuple(output_padding, nd, 'output_padding', op, 0)
    xp = data.xp
    prime_host_allocator(xp)
    wd = weight._data
    # contiguous once: the forward GEMMs and the weight gradient both read it
    x = xp.ascontiguousarray(_to_nsc(_input_data(data, wd), last))
    Cin = x.shape[-1]
    size = x.shape[1:-1]
    Og = wshape[1]
    kernel = wshape[2:]
    O = Og * groups
    if wshape[0] != Cin:
        raise ValueError(f'{op}: input has {Cin} channels (shape {data.shape}) but the weight '
                         f'{weight.shape} expects {wshape[0]}')
    if Cin % groups:
        raise ValueError(f'{op}: {Cin} input channels are not divisible by groups={groups}')
    if bias is not None and bias.shape != (O,):
        raise ValueError(f'{op}: bias shape {bias.shape} does not match {O} output channels')
    out = deconv_output_size(size, kernel, stride, pad, dilate, output_padding)
    if any(o < 1 for o in out):
        raise ValueError(f'{op}: output size {out} is not positive (input shape {data.shape}, '
                         f'kernel {tuple(kernel)}, stride {stride}, padding {pad})')
    for a, s, d in zip(output_padding, stride, dilate):
        if a >= max(s, d):
            raise ValueError(f'{op}: output_padding {output_padding} must be smaller than the '
                             f'stride {stride} or the dilation {dilate}')
    # The weight (Cin, Og, *K) is that of the convolution (channels -> Cin) which this op
    # transposes: per group Cin/groups output rows and K*Og columns.
    wm = _weight_matrix(wd, last).reshape(groups, Cin // groups, -1)
    y = _conv_transpose_nsc(xp, x, wm, out, kernel, stride, pad, dilate, size, groups)
    if bias is not None:
        y = y + bias._data.astype(y.dtype, copy=False)
    result = _from_nsc(y, last)
    need = needs_grad(data, weight, bias)
    if need is None:
        return _wrap(result, data._ctx)
    in_dtype = data.dtype

    def backward(g):
        g = xp.ascontiguousarray(_to_nsc(g, last))      # once, for every product below
        gx = gw = gb = None
        if need[0] or need[1]:
            gx, gcol = _conv_nsc(xp, g, wm, kernel, stride, pad, dilate, size, groups,
                                 keep_col=need[1])
            if need[0]:
                gx = _from_nsc(gx, last)
                if gx.dtype != in_dtype:
                    gx = gx.astype(in_dtype)
            else:
                gx = None
            if need[1]:
                gw = _weight_from_matrix(_weight_grad(xp, x, gcol, groups), wshape, last)
                scratch.give(gcol)
        if need[2]:
            gb = _channel_sum(xp, g)
        return gx, gw, gb
    return record_op(backward, (data, weight, bias), result, data._ctx, need=need,
                     name='deconvolution')


# Pooling and the deformable convolutions build on this module's helpers; they live in their
# own modules and are exported from here (and so from ``xpnet.ops``).
from .pool import pooling, pool_output_size  # noqa: E402
from .deformable import deformable_convolution, modulated_deformable_convolution  # noqa: E402
