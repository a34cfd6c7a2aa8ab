"""Winograd F(4x4, 3x3): the fast path of 3x3, stride-1 2-D convolutions.

A 3x3 convolution computed on 6x6 input tiles (stride 4) gives 4x4 output tiles with 36
elementwise products per tile and channel pair instead of 144 (Lavin & Gray, 2016):

    Y = A^T [ (G w G^T) (.) (B^T d B) ] A

The input and output transforms are separable: ``B^T d B`` of every tile is two 1-D
passes, each one GEMM with K = 6 over all tiles (:func:`_transform`; a third of the
multiplies of one GEMM with the 36x36 Kronecker matrix ``B^T (x) B^T``); the weight
transform uses
``KG = G (x) G`` (36x9) once. The channel contraction is a batch of 36 GEMMs
``(tiles, C) @ (C, O)``. The backward pass is the exact adjoint of the same products:
``dM = A g A^T`` once, then ``dU = V^T dM`` (weight) and ``dV = dM U^T`` (input), whose
6x6 tiles are added back into place (they overlap by two rows and columns).

On the host every stage is independent across samples, so the forward pass and the input
gradient run in batch parts over ``backend.hostpool.run_parts`` (each part the whole
chain, walking its samples in cache-sized chunks, with scratch allocated once); the weight
gradient ``dU`` is returned as a function, which the convolution op runs as a background
job (``backend.hostpool.defer``) while the backward pass goes on.

With few channels the transforms cost more than the multiplies they save (8->8 channels
break even), hence the 16-channel threshold; the transformed input kept for the weight
gradient is a quarter of the column matrix (timings and sizes: ``docs/performance.md``).
The transformed output gradient lives until the weight gradient is done.

Numerics: the transforms multiply by up to 8 and divide by up to 24, so float32 results
carry about 10x the rounding error of a direct sum (max error 6e-6 of the largest output for
288-term dot products, against 7e-7 direct) -- well inside the 1e-4 relative
tolerance of the MXNet parity bar. :func:`use_winograd` only selects it for layers where it
is faster (enough channels), so small layers keep the direct path.

Example::

    y, saved = winograd_forward(xp, x, wm, bias, pad=(1, 1), out=(32, 32))
    gx, weight_grad = winograd_backward(xp, g, saved, need_x=True, need_w=True)
    gwm = weight_grad()
"""
import numpy as np

from ..backend import hostpool
from ..backend.memory import scratch

__all__ = ['use_winograd', 'winograd_forward', 'winograd_backward', 'WINOGRAD']

# Tuning switch: None selects by size (see use_winograd); True/False force it (tests).
WINOGRAD = {'force': None, 'min_channels': 16}

_BT = np.array([[4, 0, -5, 0, 1, 0],
                [0, -4, -4, 1, 1, 0],
                [0, 4, -4, -1, 1, 0],
                [0, -2, -1, 2, 1, 0],
                [0, 2, -1, -2, 1, 0],
                [0, 4, 0, -5, 0, 1]], dtype=np.float64)
_G = np.array([[1 / 4, 0, 0],
               [-1 / 6, -1 / 6, -1 / 6],
               [-1 / 6, 1 / 6, -1 / 6],
               [1 / 24, 1 / 12, 1 / 6],
               [1 / 24, -1 / 12, 1 / 6],
               [0, 0, 1]], dtype=np.float64)
_AT = np.array([[1, 1, 1, 1, 1, 0],
                [0, 1, -1, 2, -2, 0],
                [0, 1, 1, 4, 4, 0],
                [0, 1, -1, 8, -8, 1]], dtype=np.float64)

_host = {}


def _kron(dtype):
    """Host copies of the transform matrices (and the transposes the backward pass
    multiplies by), per dtype: the 1-D input/output transforms and the weight's Kronecker
    matrix ``G (x) G``."""
    key = np.dtype(dtype).str
    if key not in _host:
        kg = np.kron(_G, _G)
        _host[key] = {name: np.ascontiguousarray(m, dtype=dtype) for name, m in
                      (('BT', _BT), ('AT', _AT), ('B', _BT.T), ('A', _AT.T), ('KG', kg),
                       ('KGt', kg.T))}
    return _host[key]


_device = {}


def _mats(xp, dtype, *names):
    """The named transform matrices on the current device (uploaded once per device and
    dtype, not at every call)."""
    host = _kron(dtype)
    if xp is np:
        return [host[n] for n in names]
    key = (id(xp), xp.cuda.runtime.getDevice(), np.dtype(dtype).str)
    mats = _device.get(key)
    if mats is None:
        mats = _device[key] = {n: xp.asarray(m) for n, m in host.items()}
    return [mats[n] for n in names]


def use_winograd(xp, kernel, stride, dilate, groups, C, O, dtype):
    """True when a convolution should take the Winograd path: 2-D, 3x3, stride 1,
    dilation 1, one group, float32/float64 (half precision would lose too much in the
    transforms), and at least ``min_channels`` input and output channels (below that the
    transforms cost more than the multiplies they save)."""
    dtype = np.dtype(dtype)
    if tuple(kernel) != (3, 3) or tuple(stride) != (1, 1) or tuple(dilate) != (1, 1) \
            or groups != 1 or dtype.kind != 'f' or dtype.itemsize < 4 \
            or getattr(getattr(xp, 'lib', None), 'stride_tricks', None) is None:
        return False
    if WINOGRAD['force'] is not None:
        return bool(WINOGRAD['force'])
    return min(C, O) >= WINOGRAD['min_channels']


def _gather_tiles(xp, x, pad, xpad, out):
    """The 6x6 input tiles (stride 4) of the zero-padded ``x`` (n, H, W, C), offset-major,
    written into ``out`` (6, 6, n, th, tw, C) through ``xpad`` (n, 4 th + 2, 4 tw + 2, C),
    which receives the padded input: one copy, the border fills and one strided copy of
    all 36 offsets. (Few, large NumPy calls: while another part runs beside this one,
    every call may wait for the GIL to come back.)"""
    n, H, W, C = x.shape
    ph, pw = pad
    xpad[:, ph:ph + H, pw:pw + W] = x
    if ph:
        xpad[:, :ph] = 0
    if ph + H < xpad.shape[1]:
        xpad[:, ph + H:] = 0
    if pw:
        xpad[:, ph:ph + H, :pw] = 0
    if pw + W < xpad.shape[2]:
        xpad[:, ph:ph + H, pw + W:] = 0
    s = xpad.strides
    out[...] = xp.lib.stride_tricks.as_strided(
        xpad, out.shape[:2] + (n,) + out.shape[3:],
        (s[1], s[2], s[0], 4 * s[1], 4 * s[2], s[3]))
    return out


def _view(xp, a, shape):
    """``a.reshape(shape)``, guaranteed to be a view (parts write through it)."""
    if xp is np:
        return np.reshape(a, shape, copy=False)
    return a.reshape(shape)


def _run(xp, fn, n, nbytes):
    """``fn(lo, hi)`` over the batch: on the CPU in parts over the host pool when the
    scratch of the whole batch (``nbytes``) is large enough to pay for the hand-off (see
    ``xpnet/backend/hostpool.py``), else as one part (the BLAS on one thread either way);
    whole on devices."""
    if xp is not np:
        fn(0, n)
        return
    split = hostpool.can_split_blas() and nbytes >= hostpool.SPLIT_BYTES
    hostpool.run_parts(fn, n, None if split else 1)


def _transform(xp, A, src, tmp, out):
    """``out[i, j, :] = sum_{a, b} A[i, a] A[j, b] src[a, b, :]``: the 2-D transform
    ``A d A^T`` of every tile, as two 1-D passes through ``tmp`` -- two GEMMs with K = 6
    or 4 instead of one with the Kronecker matrix (K = 36 or 16): a third of the
    multiplies, and faster also when two parts share the memory bandwidth."""
    p, q = A.shape
    L = src.size // (q * q)
    t = tmp[:p * q * L]
    xp.matmul(A, _view(xp, src, (q, q * L)), out=_view(xp, t, (p, q * L)))
    xp.matmul(A, _view(xp, t, (p, q, L)), out=_view(xp, out, (p, p, L)))
    return out


# Each part walks its samples in chunks whose largest scratch array holds about this many
# bytes: for a large batch a part touches one chunk's scratch, not its whole share (the
# buffers are allocated whole but only touched pages cost memory). Smaller chunks buy no
# cache reuse and cost NumPy calls, each of which may wait for the GIL.
CHUNK_BYTES = 1 << 23


class _Workspace:
    """Scratch regions for the parts: region ``r`` holds ``per_sample[r]`` numbers per
    sample. A part ``[lo, hi)`` walks its samples in chunks (:meth:`chunks`) and every
    chunk reuses the scratch at the part's first sample (:meth:`get`), so concurrent
    parts never overlap and one part's chunks reuse the same memory."""

    def __init__(self, xp, dtype, n_samples, *per_sample):
        self.per_sample = per_sample
        self.chunk = max(1, CHUNK_BYTES // (max(per_sample) * np.dtype(dtype).itemsize))
        self.bufs = [scratch.empty(xp, (n_samples * p,), dtype) for p in per_sample]

    def chunks(self, lo, hi):
        """``(c0, c1)`` sample ranges covering ``[lo, hi)``."""
        for c0 in range(lo, hi, self.chunk):
            yield c0, min(c0 + self.chunk, hi)

    def get(self, r, lo, n, shape):
        """A contiguous array of ``shape`` (at most ``n`` samples' worth) in region ``r``,
        starting at sample ``lo``'s scratch."""
        count = 1
        for d in shape:
            count *= int(d)
        if count > n * self.per_sample[r]:
            raise AssertionError(f'workspace chunk too small for {shape}')
        start = lo * self.per_sample[r]
        return self.bufs[r][start:start + count].reshape(shape)


def winograd_forward(xp, x, wm, bias, pad, out, keep=(True, True)):
    """3x3 stride-1 convolution of channels-last ``x`` (N, H, W, C).

    Args:
        wm: the weight as an (O, 9*C) matrix, columns ordered (kh, kw, c).
        bias: (O,) array or None, added during the final copy.
        pad: (ph, pw) zero padding; out: the output size (H + 2ph - 2, W + 2pw - 2).
        keep: ``(for_input_grad, for_weight_grad)``: what :func:`winograd_backward` will
            be asked for (the transformed weight, resp. the transformed input, is kept).

    Returns:
        ``(y, saved)``: y (N, *out, O) (a view of a tile-aligned buffer when ``out`` is not
        a multiple of 4) and the saved state (or None).

    On the host the batch is split over :func:`~xpnet.backend.hostpool.run_parts`: every
    stage of a sample's tiles is independent of the other samples', so each part runs the
    whole chain (gather, input transform, channel GEMMs, output transform, final copy)
    into its slice of buffers allocated here.
    """
    N, H, W, C = x.shape
    O = wm.shape[0]
    OH, OW = out
    th, tw = -(-OH // 4), -(-OW // 4)
    tt = th * tw
    dtype = np.result_type(x.dtype, wm.dtype)
    BT, KG, AT = _mats(xp, dtype, 'BT', 'KG', 'AT')
    x = x.astype(dtype, copy=False)
    # U[xi, c, o] = sum_k KG[xi, k] w[o, k, c]
    w9 = xp.ascontiguousarray(wm.reshape(O, 9, C).transpose(1, 2, 0)).reshape(9, C * O)
    U = hostpool.matmul(KG, w9.astype(dtype, copy=False)).reshape(36, C, O)
    b = None if bias is None else bias.astype(dtype, copy=False)
    V = scratch.empty(xp, (36, N, tt, C), dtype)
    # scratch: the input tiles, then (once V holds their transform) the channel products,
    # in the same memory; the padded input
    R = 36 * max(C, O) * tt
    work = _Workspace(xp, dtype, N, R, R, (4 * th + 2) * (4 * tw + 2) * C)
    full = scratch.empty(xp, (N, th, 4, tw, 4, O), dtype)

    def part(lo, hi):
        for c0, c1 in work.chunks(lo, hi):
            n = c1 - c0
            Vp = V[:, c0:c1]
            # regions: tiles (0) -> 1-D transform (1) -> V; V U (0) -> 1-D (1) -> Y (0)
            X = work.get(0, lo, n, (6, 6, n, th, tw, C))
            xpad = work.get(2, lo, n, (n, 4 * th + 2, 4 * tw + 2, C))
            _gather_tiles(xp, x[c0:c1], pad, xpad, X)
            _transform(xp, BT, X, work.get(1, lo, n, (36 * n * tt * C,)), Vp)
            M = work.get(0, lo, n, (36, n * tt, O))
            xp.matmul(_view(xp, Vp, (36, n * tt, C)), U, out=M)
            Y = work.get(0, lo, n, (16, n * tt * O))
            _transform(xp, AT, M, work.get(1, lo, n, (24 * n * tt * O,)), Y)
            src = Y.reshape(4, 4, n, th, tw, O).transpose(2, 3, 0, 4, 1, 5)
            if b is not None:
                xp.add(src, b, out=full[c0:c1])
            else:
                full[c0:c1] = src
    _run(xp, part, N, R * N * np.dtype(dtype).itemsize)
    y = full.reshape(N, 4 * th, 4 * tw, O)
    if (OH, OW) != (4 * th, 4 * tw):
        y = y[:, :OH, :OW]
    saved = None
    if keep[0] or keep[1]:
        saved = (V if keep[1] else None, U if keep[0] else None, (N, H, W, C), tuple(pad),
                 (OH, OW), (th, tw))
    return y, saved


def _add_tiles(xp, t, gp):
    """Add the 6x6 input-gradient tiles ``t`` (6, 6, n, th, tw, C) (stride 4, offset-major;
    modified) into the padded image ``gp`` (n, 4 th + 2, 4 tw + 2, C), which they cover."""
    n, th, tw, C = t.shape[2:]
    last_r, last_c = th - 1, tw - 1
    # 6x6 tiles at stride 4 overlap by two rows and columns. Fold the overlaps while the
    # tiles are still offset-major (a shift by one tile along th or tw: long contiguous
    # runs), then place the disjoint 4x4 cores and the spill past the last tile row/column
    # (3x faster than adding strided 6x6 margins into the image).
    t[0:2, :, :, 1:] += t[4:6, :, :, :-1]
    t[0:4, 0:2, :, :, 1:] += t[0:4, 4:6, :, :, :-1]
    t[4:6, 0:2, :, last_r, 1:] += t[4:6, 4:6, :, last_r, :-1]
    _view(xp, gp[:, :4 * th, :4 * tw], (n, th, 4, tw, 4, C))[...] = \
        t[:4, :4].transpose(2, 3, 0, 4, 1, 5)
    _view(xp, gp[:, 4 * th:, :4 * tw], (n, 2, tw, 4, C))[...] = \
        t[4:6, :4, :, last_r].transpose(2, 0, 3, 1, 4)
    _view(xp, gp[:, :4 * th, 4 * tw:], (n, th, 4, 2, C))[...] = \
        t[:4, 4:6, :, :, last_c].transpose(2, 3, 0, 1, 4)
    gp[:, 4 * th:, 4 * tw:] = t[4:6, 4:6, :, last_r, last_c].transpose(2, 0, 1, 3)


def winograd_backward(xp, g, saved, need_x, need_w):
    """Gradients of :func:`winograd_forward` for the output gradient ``g`` (N, *out, O).

    Returns ``(gx, weight_grad)``: gx (N, H, W, C) (or None), computed here (split over
    the batch on the host like the forward pass), and a function computing the weight
    gradient as an (O, 9*C) matrix in ``wm``'s column order (or None): the caller may run
    it later, off the critical path (see ``backend.hostpool.defer``).
    """
    V, U, (N, H, W, C), pad, (OH, OW), (th, tw) = saved
    tt = th * tw
    dtype = (V if V is not None else U).dtype
    O = g.shape[-1]
    KGt, A, B = _mats(xp, dtype, 'KGt', 'A', 'B')
    gsrc = g.astype(dtype, copy=False)
    aligned = (OH, OW) == (4 * th, 4 * tw)
    R = 36 * max(C, O) * tt
    work = _Workspace(xp, dtype, N, R, R)
    # the output-gradient tiles' transform dM is kept whole for the weight gradient
    dM_all = scratch.empty(xp, (36, N, tt, O), dtype) if need_w else None
    if need_x:
        gpad = scratch.empty(xp, (N, 4 * th + 2, 4 * tw + 2, C), dtype)
    Ut = U.transpose(0, 2, 1) if need_x else None

    def part(lo, hi):
        for c0, c1 in work.chunks(lo, hi):
            chunk(lo, c0, c1)

    def chunk(lo, c0, c1):
        n = c1 - c0
        # regions: g's tiles (0) -> 1-D (1) -> dM (0 or dM_all); dM U^T (1) -> 1-D (0)
        # -> dX (1)
        gt = work.get(0, lo, n, (4, 4, n, th, tw, O))
        dst = gt.transpose(2, 3, 0, 4, 1, 5)
        if aligned:
            dst[...] = gsrc[c0:c1].reshape(n, th, 4, tw, 4, O)
        else:                                         # zeros past the output edge
            gfull = scratch.zeros(xp, (n, 4 * th, 4 * tw, O), dtype)
            gfull[:, :OH, :OW] = gsrc[c0:c1]
            dst[...] = gfull.reshape(n, th, 4, tw, 4, O)
        dM = _view(xp, dM_all[:, c0:c1], (36, n * tt, O)) if need_w else \
            work.get(0, lo, n, (36, n * tt, O))
        _transform(xp, A, gt, work.get(1, lo, n, (24 * n * tt * O,)), dM)
        if not need_x:
            return
        dV = work.get(1, lo, n, (36, n * tt, C))
        xp.matmul(dM, Ut, out=dV)
        dX = work.get(1, lo, n, (36, n * tt * C))
        _transform(xp, B, dV, work.get(0, lo, n, (36 * n * tt * C,)), dX)
        _add_tiles(xp, dX.reshape(6, 6, n, th, tw, C), gpad[c0:c1])
    _run(xp, part, N, R * N * np.dtype(dtype).itemsize)
    gx = None
    if need_x:
        ph, pw = pad
        gx = gpad[:, ph:ph + H, pw:pw + W]

    def weight_grad():
        dU = hostpool.matmul(dM_all.reshape(36, N * tt, O).transpose(0, 2, 1),
                             V.reshape(36, N * tt, C))                   # (36, O, C)
        gw9 = hostpool.matmul(KGt, dU.reshape(36, O * C)).reshape(9, O, C)   # (k, o, c)
        return xp.ascontiguousarray(gw9.transpose(1, 0, 2)).reshape(O, 9 * C)
    return gx, (weight_grad if need_w else None)
