"""N-d convolution and transposed convolution: one implementation for 1-D, 2-D and 3-D,
both layouts.

Everything computes on a *channels-last* view of the data, ``(N, *spatial, C)``, with the
windows of ``ops/_im2col.py``. A convolution is im2col + one GEMM per group. Its input
gradient -- and a transposed convolution, which is the same computation -- runs one kernel
offset at a time: a GEMM gives that offset's columns as a contiguous slab, which col2im
adds into place. A stride-1 "same" layer that does not widen the channels instead runs it
as a convolution with the flipped kernel, which moves less memory there. Results are views
of channels-last buffers (logical shape ``(N, C, *S)`` for channels-first layouts), so the
next convolution, pooling or elementwise op reads them without a transposing copy.

:func:`convolution` is a short dispatch to one of four paths, each a function returning
``(output, backward)`` (all exact in the gradient, tested against each other):

- on a device (CuPy, the simulated device), ``ops/_fused/conv.py``'s ``forward``: im2col
  as one kernel, one GEMM, and a gather col2im for the input gradient (Winograd's many
  small transforms cost more launches than they save on a GPU);

- :func:`_forward_winograd`: 3x3, stride 1, undilated 2-D convolutions with at least 16
  input and output channels, Winograd F(4x4, 3x3) (``ops/winograd.py``): 2.25x fewer
  multiplies and a quarter of the column matrix's memory;
- :func:`_forward_unfold`: an input with few channels in channels-first memory (an image
  batch: ``k_w * C < 16``), unfolded to the transposed column matrix, whose copies run
  along image rows instead of ``k_w * C`` numbers;
- :func:`_forward_im2col`: everything else.

:func:`deconvolution` runs :func:`_forward_transposed`.

Memory: the unfolded input is exactly the GEMM operand, ``N * prod(out) * prod(K) * C``
numbers, kept for the weight gradient; the input gradient needs one slab at a time. Column
matrices come from a pool of reusable host buffers (``backend.memory.scratch``), so a
training step does not page-fault them in afresh. Sizes and timings: ``docs/performance.md``.

Threads (``backend/hostpool.py``): on the host, products go through the pool's
:func:`~xpnet.backend.hostpool.matmul`, the Winograd path, the channels-first unfolding and
the transposed-convolution slabs run in batch parts, and a convolution's weight and bias
gradients are computed by a background job while the backward pass continues through the
layers before it (the autograd engine waits for them when it writes the parameters'
gradients).

Example::

    y = convolution(x, w, b, stride=2, pad=1)                  # x (N, C, H, W), w (O, C, 3, 3)
    u = deconvolution(z, wt, stride=2, output_padding=1)       # wt (C_in, C_out, kh, kw)
"""
from collections import namedtuple

import numpy as np

from ..backend import hostpool
from ..backend.hostpool import matmul as _mm, run_parts, worth_splitting
from ..backend.memory import scratch
from ._base import _wrap, int_tuple, needs_grad, record_op, same_ctx
from ._im2col import (check_rank, col2im, col2im_crop, col2im_reach, col2im_slabs,
                      conv_output_size, deconv_output_size, from_nsc, im2col, is_pointwise,
                      im2col_channels_first, normalize_layout, prod, to_nsc,
                      weight_from_matrix, weight_grad, weight_matrix)
from ._rows import add_channel_vector, channel_sum
from .deformable import deformable_convolution, modulated_deformable_convolution
from .pool import pool_output_size, pooling
from .winograd import use_winograd, winograd_backward, winograd_forward

__all__ = ['convolution', 'deconvolution', 'pooling', 'im2col', 'im2col_channels_first', 'col2im',
           'conv_output_size', 'deconv_output_size', 'pool_output_size', 'normalize_layout',
           'deformable_convolution', 'modulated_deformable_convolution']

def _unfold_channels_first(xd, last, groups, C, kernel, out):
    """Whether to unfold a channels-first input with :func:`im2col_channels_first`: few
    channels per kernel row (``k_w * C < 16``, so channels-last columns would be copied in
    runs shorter than 16 numbers) and the data really in channels-first memory."""
    return (not last and groups == 1 and kernel[-1] * C < 16 and out[-1] > kernel[-1] * C
            and xd.flags.c_contiguous)


# ---- the two convolution computations ---------------------------------------------------------

def _conv_nsc(xp, x, wm, kernel, stride, pad, dilate, out, groups, keep_col=False, bias=None,
              lhs=None):
    """y (N, *out, O) = convolution of channels-last ``x`` with ``wm`` (G, Og, K*Cg) (plus
    ``bias``), as im2col + one GEMM per group, and ``(y, col or None, product or None)``.

    With ``lhs`` (N*prod(out), G*A) the product ``lhs[:, group].T @ col[group]`` (G, A,
    K*Cg) is computed too -- a transposed convolution's weight gradient, whose columns are
    this convolution's. On the host the batch is split in parts, each unfolding its samples,
    multiplying their rows and (with ``lhs``) their share of the product (one hand-off for
    all; a product's partials come from parts fixed by the shape and are added in part
    order)."""
    N, G = x.shape[0], groups
    P = prod(out)
    M, Og, Kc = N * P, wm.shape[1], wm.shape[2]
    dtype = np.result_type(x.dtype, wm.dtype)
    pointwise = is_pointwise(x, kernel, stride, pad, out, groups)
    if pointwise:
        cols = scratch.contiguous(xp, x).reshape(1, M, Kc)
    else:
        col = scratch.empty(xp, (G, N) + tuple(out) + tuple(kernel) + (Kc // prod(kernel),),
                            x.dtype)
        cols = col.reshape(G, M, Kc)
    y = scratch.empty(xp, (M, G * Og), dtype)
    wt = wm.transpose(0, 2, 1)                                       # (G, K*Cg, Og)

    def part(lo, hi):
        rows = slice(lo * P, hi * P)
        if not pointwise:
            im2col(xp, x[lo:hi], kernel, stride, pad, dilate, out, groups, col=col[:, lo:hi])
        c = cols[:, rows]
        if G == 1:
            xp.matmul(c[0], wt[0], out=y[rows])
        else:
            y[rows].reshape(-1, G, Og)[...] = xp.matmul(c, wt).transpose(1, 0, 2)
        if bias is not None:
            add_channel_vector(xp, y[rows], bias)
        if lhs is None:
            return None
        if G == 1:
            return xp.matmul(lhs[rows].T, c[0])[None]
        return xp.matmul(lhs[rows].reshape(hi * P - lo * P, G, -1).transpose(1, 2, 0), c)
    macs = M * G * Og * Kc
    if lhs is not None:
        parts = hostpool.fixed_parts(M * lhs.shape[1] * Kc, hostpool.SPLIT_MNK, N) \
            if xp is np else 1
        partial = hostpool.map_parts(part, N, parts)
        product = partial[0]
        for p in partial[1:]:
            product += p
    else:
        split = xp is np and hostpool.can_split_blas() and (
            macs >= hostpool.SPLIT_MNK or (not pointwise and worth_splitting(col)))
        run_parts(part, N, None if split else 1)
        product = None
    y = y.reshape((N,) + tuple(out) + (-1,))
    return y, (cols if keep_col else None), product


def _conv_transpose_nsc(xp, g, wm, size, kernel, stride, pad, dilate, out, groups):
    """The adjoint of :func:`_conv_nsc` in its input: ``g`` (N, *out, G*Og) -> (N, *size,
    G*Cg). For each kernel offset one GEMM gives that offset's columns as a contiguous
    (G, N*prod(out), Cg) slab (reusing one buffer), which col2im accumulates at once; on
    the host the batch is split in parts over the pool, each part running every offset."""
    N = g.shape[0]
    G = groups
    Kp = prod(kernel)
    M = N * prod(out)
    Og = wm.shape[1]
    Cg = wm.shape[2] // Kp
    if all(s == 1 for s in stride) and prod(size) <= 1.05 * prod(out) and Og <= Cg:
        # A stride-1 "same" transposed convolution that does not widen the channels is a
        # convolution with the flipped kernel: one im2col + one GEMM moves less memory than
        # prod(K) slabs and strided adds.
        tpad = tuple(d * (k - 1) - p for k, p, d in zip(kernel, pad, dilate))
        return _conv_nsc(xp, g, _flipped(wm, Kp), kernel, (1,) * len(kernel), tpad, dilate,
                         size, G)[0]
    # wm (G, Og, K*Cg) -> (K, G, Og, Cg): per kernel offset and group an (Og, Cg) block
    wk = xp.ascontiguousarray(wm.reshape(G, Og, Kp, Cg).transpose(2, 0, 1, 3))
    dtype = np.result_type(g.dtype, wk.dtype)
    P = prod(out)
    g4 = scratch.contiguous(xp, g).reshape(N, P, G, Og)
    buf = scratch.empty(xp, (N,) + col2im_reach(size, kernel, stride, pad, dilate, out) +
                        (G, Cg), dtype)
    lone = xp is np and N < 2 and M * Og * Cg * Kp >= hostpool.SPLIT_MNK

    def part(lo, hi):
        # the samples [lo, hi): their slabs and their rows of the image (one hand-off for
        # every kernel offset)
        n = hi - lo
        gp = g4[lo:hi].reshape(n * P, G, Og).transpose(1, 0, 2)             # (G, n*P, Og)
        tmp = scratch.empty(xp, (G, n * P, Cg), dtype)
        mm = hostpool.threaded_matmul if lone else xp.matmul
        b = buf[lo:hi]
        b[...] = 0
        col2im_slabs(xp, lambda i: mm(gp, wk[i], out=tmp), b, kernel, stride, dilate, out)
    if xp is not np or lone:
        part(0, N)           # (one large sample: on the BLAS's threads)
    else:
        split = hostpool.can_split_blas() and M * Og * Cg * Kp * G >= hostpool.SPLIT_MNK
        run_parts(part, N, None if split else 1)
    return col2im_crop(buf, size, pad)


def _flipped(wm, Kp):
    """(G, Og, K*Cg) -> (G, Cg, K*Og) with the kernel offsets reversed (every spatial axis
    flipped): the weight of a stride-1 transposed convolution seen as a convolution."""
    G, Og = wm.shape[:2]
    w4 = wm.reshape(G, Og, Kp, -1)[:, :, ::-1, :]
    return w4.transpose(0, 3, 2, 1).reshape(G, -1, Kp * Og)


# A weight gradient of fewer multiply-adds than this is computed at once: starting a
# background job and waiting for it costs more than a small product.
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


# ---- arguments -----------------------------------------------------------------------------

# One convolution's geometry: layout, kernel/stride/pad/dilate tuples, groups, the input's
# and output's spatial sizes and the weight shape as (A, B, *K) whatever the layout.
_Geometry = namedtuple('_Geometry', 'last kernel stride pad dilate groups size out wshape')


def _conv_args(data, weight, bias, stride, pad, dilate, groups, layout, op):
    same_ctx(data, weight, op)
    if bias is not None:
        same_ctx(data, bias, op)
    nd, last = normalize_layout(layout, weight.ndim - 2 if layout is None else None, op)
    if weight.ndim != nd + 2:
        raise ValueError(f'{op}: weight must be {nd + 2}-D for layout {layout or "NC..."}, '
                         f'got shape {weight.shape}')
    check_rank(data, nd, layout, op)
    stride = int_tuple(stride, nd, 'stride', op, 1)
    pad = int_tuple(pad, nd, 'pad', op, 0)
    dilate = int_tuple(dilate, nd, 'dilate', op, 1)
    groups = int(groups)
    if groups < 1:
        raise ValueError(f'{op}: groups must be >= 1, got {groups}')
    wshape = weight.shape
    # (A, B, *K) whatever the layout: A = first axis, B = the per-group channel axis
    shape_cf = (wshape[0], wshape[-1]) + tuple(wshape[1:-1]) if last else tuple(wshape)
    return nd, last, stride, pad, dilate, groups, shape_cf


def _conv_geometry(data, weight, bias, stride, pad, dilate, groups, layout, op):
    """Validate a convolution's arguments; returns its :data:`_Geometry`."""
    nd, last, stride, pad, dilate, groups, wshape = _conv_args(
        data, weight, bias, stride, pad, dilate, groups, layout, op)
    shape = data.shape
    C, size = (shape[-1], shape[1:-1]) if last else (shape[1], shape[2:])
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
    return _Geometry(last, kernel, stride, pad, dilate, groups, tuple(size), out, wshape)


def _deconv_geometry(data, weight, bias, stride, pad, dilate, groups, output_padding,
                     layout, op):
    """Validate a transposed convolution's arguments; returns its :data:`_Geometry`
    (``wshape`` is (C_in, channels/groups, *K))."""
    nd, last, stride, pad, dilate, groups, wshape = _conv_args(
        data, weight, bias, stride, pad, dilate, groups, layout, op)
    output_padding = int_tuple(output_padding, nd, 'output_padding', op, 0)
    shape = data.shape
    Cin, size = (shape[-1], shape[1:-1]) if last else (shape[1], shape[2:])
    kernel = wshape[2:]
    O = wshape[1] * groups
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
    return _Geometry(last, kernel, stride, pad, dilate, groups, tuple(size), out, wshape)


def _input_data(data, wd):
    xd = data._data
    if xd.dtype != wd.dtype:
        xd = xd.astype(wd.dtype)
    return xd


def _record(data, weight, bias, y, backward, need, last, name):
    """Wrap the channels-last result ``y`` of a path; its ``backward(g)`` takes the output
    gradient as a C-contiguous channels-last array and returns (gx channels-last, gw, gb)."""
    result = from_nsc(y, last)
    if need is None:
        return _wrap(result, data._ctx)
    xp = data.xp
    in_dtype = data.dtype

    def backward_op(g):
        g = scratch.contiguous(xp, to_nsc(g, last))      # once, for every product below
        gx, gw, gb = backward(g)
        if gx is not None:
            gx = from_nsc(gx, last)
            if gx.dtype != in_dtype:
                gx = gx.astype(in_dtype)
        return gx, gw, gb
    return record_op(backward_op, (data, weight, bias), result, data._ctx, need=need,
                     name=name)


# ---- convolution: the paths ----------------------------------------------------------------
# Each takes the channels-first-or-last input data ``xd`` (in the weight's dtype), the
# weight and bias data, the geometry and the needed gradients, and returns the channels-last
# output with its backward (None when no gradient is needed).

def _forward_winograd(xp, xd, wd, bd, geo, need):
    """3x3, stride 1, enough channels: Winograd F(4x4, 3x3) (``ops/winograd.py``)."""
    x = to_nsc(xd, geo.last)
    keep = (bool(need and need[0]), bool(need and need[1]))
    y, saved = winograd_forward(xp, x, weight_matrix(wd, geo.last), bd, geo.pad, geo.out,
                                keep=keep)
    if need is None:
        return y, None
    O, C = geo.wshape[:2]
    tiles = x.shape[0] * -(-geo.out[0] // 4) * -(-geo.out[1] // 4)

    def backward(g):
        gx, weight_grad_fn = winograd_backward(xp, g, saved, need[0], need[1])

        def parameter_grads():
            return (weight_from_matrix(weight_grad_fn(), geo.wshape, geo.last)
                    if need[1] else None,
                    channel_sum(xp, g) if need[2] else None)
        return (gx,) + _in_background(xp, parameter_grads, need[1], need[2],
                                      36 * tiles * C * O)
    return y, backward


def _forward_unfold(xp, xd, wd, bd, geo, need):
    """Few input channels in channels-first memory (an image batch): unfold to the
    transposed column matrix, whose copies run along image rows; on the host in batch
    blocks over the pool (unfold, product and bias in one hand-off). The bias rides in the
    product: a row of ones under the columns and the bias under the weight (no pass over
    the output; the weight gradient's product then gives the bias gradient as its last
    column)."""
    N, C = xd.shape[:2]
    O = geo.wshape[0]
    kernel, out = geo.kernel, geo.out
    dtype = np.result_type(xd.dtype, wd.dtype)
    b = None if bd is None else bd.astype(dtype, copy=False)
    P, CK = prod(out), C * prod(kernel)
    col = scratch.empty(xp, (CK + (b is not None), N * P), xd.dtype)
    col_nd = col[:CK].reshape((C,) + tuple(kernel) + (N,) + tuple(out))
    y = scratch.empty(xp, (N,) + tuple(out) + (O,), dtype)
    wT = wd.reshape(O, -1).T
    if b is not None:
        wT = xp.concatenate([wT, b.reshape(1, O).astype(wT.dtype, copy=False)])
    lead = (slice(None),) * (1 + len(kernel))

    def unfold_part(lo, hi):
        im2col_channels_first(xp, xd[lo:hi], kernel, geo.stride, geo.pad, geo.dilate, out,
                              col=col_nd[lead + (slice(lo, hi),)])
        if b is not None:
            col[CK, lo * P:hi * P] = 1
        _mm(col[:, lo * P:hi * P].T, wT, out=y[lo:hi].reshape(-1, O))
    if xp is np and worth_splitting(col):
        run_parts(unfold_part, N)
    else:
        unfold_part(0, N)
    if need is None or not need[1]:
        col = None                   # (back to the pool: only the weight gradient reads it)
    if need is None:
        return y, None

    def weight_and_bias_grads(g):
        gm = _mm(g.reshape(-1, O).T, col.T)     # (O, CK [+ 1: the bias])
        gb = xp.ascontiguousarray(gm[:, CK]) if gm.shape[1] > CK and need[2] else None
        return gm[:, :CK].reshape(geo.wshape), gb
    return y, _unfolded_backward(xp, wd, None, geo, need, col, weight_and_bias_grads)


def _forward_im2col(xp, xd, wd, bd, geo, need):
    """The generic path: im2col + one GEMM per group."""
    x = to_nsc(xd, geo.last)
    wm = _group_weights(wd, geo)
    b = None if bd is None else bd.astype(np.result_type(xd.dtype, wd.dtype), copy=False)
    y, col, _ = _conv_nsc(xp, x, wm, geo.kernel, geo.stride, geo.pad, geo.dilate, geo.out,
                          geo.groups, keep_col=need is not None and need[1], bias=b)
    if need is None:
        return y, None

    def weight_and_bias_grads(g):
        return weight_from_matrix(weight_grad(xp, g, col, geo.groups), geo.wshape,
                                  geo.last), None
    return y, _unfolded_backward(xp, wd, wm, geo, need, col, weight_and_bias_grads)


def _group_weights(wd, geo):
    """The weight as per-group GEMM matrices (G, O/G, K*C/G)."""
    return weight_matrix(wd, geo.last).reshape(geo.groups, geo.wshape[0] // geo.groups, -1)


def _unfolded_backward(xp, wd, wm, geo, need, col, weight_and_bias_grads):
    """The backward of the unfolding paths: the input gradient at once (a transposed
    convolution with the group weights ``wm``, made from ``wd`` if None), the parameter
    gradients maybe in the background: ``weight_and_bias_grads(g)`` gives the weight
    gradient and the bias gradient (or None) from the kept columns ``col`` (pooled memory,
    reused once this graph and the job are gone)."""
    def backward(g):
        def parameter_grads():
            gw = gb = None
            if need[1]:
                gw, gb = weight_and_bias_grads(g)
            if need[2] and gb is None:
                gb = channel_sum(xp, g)
            return gw, gb
        gx = None
        if need[0]:
            gx = _conv_transpose_nsc(xp, g, wm if wm is not None else _group_weights(wd, geo),
                                     geo.size, geo.kernel, geo.stride, geo.pad, geo.dilate,
                                     geo.out, geo.groups)
        O, Cg = geo.wshape[:2]
        macs = g.shape[0] * prod(geo.out) * O * prod(geo.kernel) * Cg   # of the weight grad
        return (gx,) + _in_background(xp, parameter_grads, need[1], need[2], macs)
    return backward


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
    geo = _conv_geometry(data, weight, bias, stride, pad, dilate, groups, layout,
                         name or 'Convolution')
    xp = data.xp
    wd = weight._data
    xd = _input_data(data, wd)
    O, C = geo.wshape[0], geo.wshape[1] * geo.groups
    from ._fused import conv as _device
    if _device.applies(xp, xd.dtype, geo):      # im2col + one GEMM (Winograd is for CPUs)
        path = _device.forward
    elif use_winograd(xp, geo.kernel, geo.stride, geo.dilate, geo.groups, C, O, xd.dtype):
        path = _forward_winograd
    elif _unfold_channels_first(xd, geo.last, geo.groups, C, geo.kernel, geo.out):
        path = _forward_unfold
    else:
        path = _forward_im2col
    need = needs_grad(data, weight, bias)
    y, backward = path(xp, xd, wd, None if bias is None else bias._data, geo, need)
    return _record(data, weight, bias, y, backward, need, geo.last, 'convolution')


# ---- transposed convolution ----------------------------------------------------------------

def _forward_transposed(xp, x, wd, bd, geo, need):
    """A transposed convolution of the C-contiguous channels-last ``x``: the input gradient
    of the convolution (channels -> C_in) whose weight it holds; its backward is that
    convolution (input gradient) and its weight gradient."""
    Cin, groups = geo.wshape[0], geo.groups
    # per group Cin/groups output rows and K*Og columns
    wm = weight_matrix(wd, geo.last).reshape(groups, Cin // groups, -1)
    y = _conv_transpose_nsc(xp, x, wm, geo.out, geo.kernel, geo.stride, geo.pad, geo.dilate,
                            geo.size, groups)
    if bd is not None:
        y += bd.astype(y.dtype, copy=False)         # (a view of the op's own buffer)
    if need is None:
        return y, None

    def backward(g):
        gx = gw = gb = None
        if need[0] or need[1]:
            # the weight gradient x^T @ (g's columns) in the same pass over the batch
            gx, _, gwm = _conv_nsc(xp, g, wm, geo.kernel, geo.stride, geo.pad, geo.dilate,
                                   geo.size, groups,
                                   lhs=x.reshape(-1, x.shape[-1]) if need[1] else None)
            if not need[0]:
                gx = None
            if need[1]:
                gw = weight_from_matrix(gwm, geo.wshape, geo.last)
        if need[2]:
            gb = channel_sum(xp, g)
        return gx, gw, gb
    return y, backward


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
    geo = _deconv_geometry(data, weight, bias, stride, pad, dilate, groups, output_padding,
                           layout, name or 'Deconvolution')
    xp = data.xp
    wd = weight._data
    # contiguous once: the forward GEMMs and the weight gradient both read it
    x = scratch.contiguous(xp, to_nsc(_input_data(data, wd), geo.last))
    need = needs_grad(data, weight, bias)
    y, backward = _forward_transposed(xp, x, wd, None if bias is None else bias._data, geo,
                                      need)
    return _record(data, weight, bias, y, backward, need, geo.last, 'deconvolution')
