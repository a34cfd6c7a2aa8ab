"""The channels-last windows shared by convolution, pooling and deformable convolution.

Everything here works on a *channels-last* view of the data, ``(N, *spatial, C)``: a
channels-first ``(N, C, *S)`` array and a channels-last one are both views of it
(:func:`to_nsc` / :func:`from_nsc`), so layouts cost nothing at the entry. The building
blocks of a convolution as matrix products (``ops/conv.py``; ``ops/pool.py`` and
``ops/deformable.py`` use the same views and helpers):

- :func:`im2col`: the windows of the (padded) input as a ``(groups, N * prod(out),
  prod(K) * C/groups)`` matrix, made by one strided copy of a window view (rows are output
  positions, columns run over kernel offsets then channels, so the innermost copied runs are
  ``k_w * C`` contiguous numbers);
- :func:`im2col_channels_first`: the transposed column matrix of a channels-first input,
  copied along image rows (for inputs with few channels);
- :func:`col2im`: the adjoint of :func:`im2col`, one strided accumulation of a contiguous
  slab per kernel offset (loops run over kernel offsets only, never over batch elements or
  positions);
- :func:`gemm_groups`, :func:`weight_matrix`, :func:`weight_grad`,
  :func:`weight_from_matrix`: one matrix product per group, with the weight as a
  ``(out/groups, prod(K) * in/groups)`` matrix, and its weight gradient.

Large column matrices come from ``backend.memory.scratch`` (reused between steps).

Example::

    col = im2col(np, to_nsc(x, False), (3, 3), (1, 1), (1, 1), (1, 1), out=(32, 32))
"""
import itertools

from ..backend.hostpool import matmul as _mm
from ..backend.memory import scratch

__all__ = ['normalize_layout', 'check_rank', 'to_nsc', 'from_nsc', 'prod', 'conv_output_size',
           'deconv_output_size', 'window', 'pad_nsc', 'im2col', 'im2col_channels_first',
           'col2im', 'col2im_reach', 'col2im_slabs', 'col2im_crop', 'gemm_groups', 'weight_matrix',
           'weight_grad', 'weight_from_matrix', 'is_pointwise']

_LAYOUTS = {
    'NCW': (1, False), 'NWC': (1, True),
    'NCHW': (2, False), 'NHWC': (2, True),
    'NCDHW': (3, False), 'NDHWC': (3, True),
}


# ---- argument handling ---------------------------------------------------------------------

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


def check_rank(data, nd, layout, op):
    if data.ndim != nd + 2:
        lay = layout or 'NC' + 'DHW'[3 - nd:]
        raise ValueError(f'{op}: expected a {nd + 2}-D input for layout {lay} '
                         f'(batch, channels and {nd} spatial axes), got shape {data.shape}')


def to_nsc(d, last):
    """(N, C, *S) (or already (N, *S, C)) -> an (N, *S, C) view."""
    if last:
        return d
    return d.transpose((0,) + tuple(range(2, d.ndim)) + (1,))


def from_nsc(d, last):
    """(N, *S, C) -> an (N, C, *S) view (or itself for channels-last layouts)."""
    if last:
        return d
    return d.transpose((0, d.ndim - 1) + tuple(range(1, d.ndim - 1)))


def prod(values):
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

def window(offset, stride, dilate, out):
    """Slices selecting, for one kernel offset, the input element of every output position."""
    return tuple(slice(k * d, k * d + s * (o - 1) + 1, s)
                 for k, s, d, o in zip(offset, stride, dilate, out))


def pad_nsc(xp, x, before, extent, value=0):
    """(N, *S, C) -> a C-contiguous (N, *extent, C) buffer holding ``x`` after ``before``
    elements of ``value`` on each spatial axis (``x`` itself when nothing changes).
    ``before`` may be negative (the input is then cropped)."""
    size = x.shape[1:-1]
    if all(b == 0 for b in before) and tuple(extent) == tuple(size) and x.flags.c_contiguous:
        return x
    shape = (x.shape[0],) + tuple(extent) + (x.shape[-1],)
    buf = scratch.empty(xp, shape, x.dtype)
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


def im2col(xp, x, kernel, stride, pad, dilate, out, groups=1, col=None):
    """Windows of the channels-last input ``x`` (N, *S, C) as a ``(groups, N*prod(out),
    prod(K)*C/groups)`` matrix: row = output position, column = (kernel offset, channel).

    ``pad`` may be negative (the input is cropped first). ``col``: write into this
    ``(groups, N, *out, *K, C/groups)`` array (a view into a larger matrix) instead, and
    return it."""
    N, C = x.shape[0], x.shape[-1]
    size = x.shape[1:-1]
    nd = len(size)
    Cg = C // groups
    M = N * prod(out)
    if col is None and is_pointwise(x, kernel, stride, pad, out, groups):
        return scratch.contiguous(xp, x).reshape(1, M, C)   # a 1x1 convolution: no windows
    extent = tuple(max(s + 2 * p, (o - 1) * st + (k - 1) * d + 1)
                   for s, p, o, st, k, d in zip(size, pad, out, stride, kernel, dilate))
    xpad = pad_nsc(xp, x, pad, extent)
    st = xpad.strides
    shape = (groups, N) + tuple(out) + tuple(kernel) + (Cg,)
    strides = (Cg * st[-1], st[0]) + tuple(st[1 + i] * stride[i] for i in range(nd)) + \
        tuple(st[1 + i] * dilate[i] for i in range(nd)) + (st[-1],)
    view = _as_strided(xp, xpad, shape, strides)
    given = col is not None
    if not given:
        col = scratch.empty(xp, shape, x.dtype)
    if view is not None:
        col[...] = view
        return col if given else col.reshape(groups, M, prod(kernel) * Cg)
    # fallback for array modules without stride tricks: one copy per kernel offset
    xg = xpad.reshape(xpad.shape[:-1] + (groups, Cg))
    lead = (slice(None),) * (2 + nd)
    for k in itertools.product(*map(range, kernel)):
        src = xg[(slice(None),) + window(k, stride, dilate, out)]
        col[lead + k] = xp.moveaxis(src, -2, 0)
    return col if given else col.reshape(groups, M, prod(kernel) * Cg)


def is_pointwise(x, kernel, stride, pad, out, groups):
    """Whether a convolution of ``x`` (N, *S, C) is a 1x1 one needing no windows: the
    input's rows are the column matrix."""
    return (groups == 1 and all(k == 1 for k in kernel) and all(s == 1 for s in stride)
            and not any(pad) and tuple(out) == tuple(x.shape[1:-1]))


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
    # pad every (sample, channel) plane: pad_nsc pads the middle axes of (N*C, *S, 1)
    xpad = pad_nsc(xp, x.reshape((N * C,) + tuple(size) + (1,)), pad, extent)
    xpad = xpad.reshape((N, C) + extent)
    st = xpad.strides
    shape = (C,) + tuple(kernel) + (N,) + tuple(out)
    strides = (st[1],) + tuple(st[2 + i] * dilate[i] for i in range(nd)) + (st[0],) + \
        tuple(st[2 + i] * stride[i] for i in range(nd))
    view = xp.lib.stride_tricks.as_strided(xpad, shape, strides)
    if col is not None:
        col[...] = view
        return col
    col = scratch.empty(xp, shape, x.dtype)
    col[...] = view
    return col.reshape(C * prod(kernel), N * prod(out))


def col2im(xp, cols, N, size, kernel, stride, pad, dilate, out):
    """Adjoint of :func:`im2col`, taking the columns kernel-offset-major: ``cols`` is
    ``(G, prod(K), N*prod(out), Cg)`` and the result the channels-last image
    ``(N, *size, G*Cg)``. One strided accumulation of a contiguous slab per kernel offset."""
    G, Cg = cols.shape[0], cols.shape[3]
    reach = col2im_reach(size, kernel, stride, pad, dilate, out)
    buf = scratch.zeros(xp, (N,) + reach + (G, Cg), cols.dtype)
    col2im_slabs(xp, lambda i: cols[:, i], buf, kernel, stride, dilate, out)
    return col2im_crop(buf, size, pad)


def col2im_reach(size, kernel, stride, pad, dilate, out):
    """The spatial extent of the padded image that col2im accumulates into."""
    return tuple(max(s + 2 * p, (o - 1) * st + (k - 1) * d + 1)
                 for s, p, o, st, k, d in zip(size, pad, out, stride, kernel, dilate))


def col2im_slabs(xp, slab, buf, kernel, stride, dilate, out):
    """col2im into the zeroed padded image ``buf`` (n, *reach, G, Cg), with the columns of
    kernel offset ``i`` given by ``slab(i)`` (G, n*prod(out), Cg), so that they can be
    computed one offset at a time and never held all at once. Returns ``buf``."""
    n, G, Cg = buf.shape[0], buf.shape[-2], buf.shape[-1]
    disjoint = all(s >= (k - 1) * d + 1 for s, k, d in zip(stride, kernel, dilate))
    for i, k in enumerate(itertools.product(*map(range, kernel))):
        win = (slice(None),) + window(k, stride, dilate, out)
        src = slab(i).transpose(1, 0, 2).reshape((n,) + tuple(out) + (G, Cg))
        if disjoint:
            buf[win] = src
        else:
            buf[win] += src
    return buf


def col2im_crop(buf, size, pad):
    """The image ``(n, *size, G*Cg)`` inside col2im's padded ``buf``."""
    crop = (slice(None),) + tuple(slice(p, p + s) for p, s in zip(pad, size))
    return buf[crop].reshape((buf.shape[0],) + tuple(size) + (buf.shape[-2] * buf.shape[-1],))


# ---- convolutions as matrix products -----------------------------------------------------

def gemm_groups(xp, col, wm):
    """Per group: ``col[g] (M, Kc) @ wm[g].T (Kc, Og)``; -> (M, G*Og)."""
    if col.shape[0] == 1:
        return _mm(col[0], wm[0].T)
    y = _mm(col, wm.transpose(0, 2, 1))                 # (G, M, Og)
    return y.transpose(1, 0, 2).reshape(col.shape[1], -1)


def weight_matrix(w, last):
    """A (channels-first or -last) weight (A, B, *K) as the GEMM matrix (A, prod(K) * B):
    a convolution's (O, Cg, *K) gives (O, K*Cg); a transposed convolution's (Cin, Og, *K)
    gives (Cin, K*Og), the matrix of the convolution it transposes."""
    if not last:
        w = w.transpose((0,) + tuple(range(2, w.ndim)) + (1,))
    return w.reshape(w.shape[0], -1)


def weight_grad(xp, g, col, groups):
    """(G, Og, K*Cg) = per group ``g[:, group].T @ col[group]``; g (N, *out, G*Og)."""
    M = col.shape[1]
    g2 = scratch.contiguous(xp, g).reshape(M, -1)
    if groups == 1:
        return _mm(g2.T, col[0]).reshape(1, g2.shape[1], -1)
    gg = g2.reshape(M, groups, -1).transpose(1, 2, 0)             # (G, Og, M)
    return _mm(gg, col)


def weight_from_matrix(gm, shape_cf, last):
    """(A, K*B) gradient matrix -> the weight's own layout ((A, B, *K) or (A, *K, B))."""
    A, B = shape_cf[:2]
    kernel = tuple(shape_cf[2:])
    g = gm.reshape((A,) + kernel + (B,))
    if last:
        return g
    return g.transpose((0, g.ndim - 1) + tuple(range(1, g.ndim - 1)))
