"""Winograd F(4x4, 3x3): the fast path of 3x3, stride-1 2-D convolutions.

A 3x3 convolution computed on 6x6 input tiles (stride 4) gives 4x4 output tiles with 36
elementwise products per tile and channel pair instead of 144 (Lavin & Gray, 2016):

    Y = A^T [ (G w G^T) (.) (B^T d B) ] A

Every transform is a small linear map, applied here as one matrix multiply over all tiles
with the Kronecker matrices ``KB = B^T (x) B^T`` (36x36), ``KG = G (x) G`` (36x9) and
``KA = A^T (x) A^T`` (16x36); the channel contraction is a batch of 36 GEMMs
``(tiles, C) @ (C, O)``. The backward pass is the exact adjoint of the same products:
``dM = KA^T g`` once, then ``dU = V^T dM`` (weight) and ``dV = dM U^T`` (input), whose
6x6 tiles are added back into place (they overlap by two rows and columns).

Measured (2 cores, forward + backward of one layer, batch 32): 32x32 images 16->16 channels
8.0 ms against 10.2 ms for im2col + GEMM, 16x16 images 32->64 5.8 against 9.2 ms; 8->8
channels break even and 3->32 is 1.4x slower, hence the 16-channel threshold. The whole
CIFAR benchmark step: 36 ms against 48 ms. The transformed input kept for the weight
gradient is 9.4 MB instead of the 37.7 MB column matrix (CIFAR's 32->32 layer).

Numerics: the transforms multiply by up to 8 and divide by up to 24, so float32 results
carry about 10x the rounding error of a direct sum (measured: max error 6e-6 of the largest
output for 288-term dot products, against 7e-7 direct) -- well inside the 1e-4 relative
tolerance of the MXNet parity bar. :func:`use_winograd` only selects it for layers where it
is faster (enough channels), so small layers keep the direct path.

Example::

    y, saved = winograd_forward(xp, x, wm, bias, pad=(1, 1), out=(32, 32))
    gx, gwm = winograd_backward(xp, g, saved, need_x=True, need_w=True)
"""
import functools

import numpy as np

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
    """Host copies of the Kronecker transform matrices (and the transposes the backward
    pass multiplies by), per dtype."""
    key = np.dtype(dtype).str
    if key not in _host:
        kb, kg, ka = np.kron(_BT, _BT), np.kron(_G, _G), np.kron(_AT, _AT)
        _host[key] = {name: np.ascontiguousarray(m, dtype=dtype) for name, m in
                      (('KB', kb), ('KG', kg), ('KA', ka), ('KBt', kb.T), ('KGt', kg.T),
                       ('KAt', ka.T))}
    return _host[key]


def _mats(xp, dtype, *names):
    host = _kron(dtype)
    if xp is np:
        return [host[n] for n in names]
    return [xp.asarray(host[n]) for n in names]


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


@functools.lru_cache(maxsize=256)
def _offset_runs(size, p, n):
    """Along one axis: runs ``(a0, a1, lo, hi)`` of tile offsets ``a0 <= a < a1`` for which
    exactly the tiles ``lo <= t < hi`` read inside the input (row ``4t + a - p`` in
    ``[0, size)``); the other tiles see zero padding there."""
    runs = []
    for a in range(6):
        lo = min(n, max(0, -((a - p) // 4)))
        hi = max(lo, min(n, (size - 1 - a + p) // 4 + 1))
        if runs and runs[-1][1] == a and runs[-1][2:] == (lo, hi):
            runs[-1] = (runs[-1][0], a + 1, lo, hi)
        else:
            runs.append((a, a + 1, lo, hi))
    return tuple(runs)


def _gather_tiles(xp, x, pad, th, tw):
    """The 6x6 input tiles (stride 4) of the zero-padded ``x`` (N, H, W, C), offset-major:
    (6, 6, N, th, tw, C). Read straight from ``x`` -- one strided copy per run of offsets
    that see the same tiles inside the image, zeros elsewhere -- so no padded copy of the
    input is made."""
    N, H, W, C = x.shape
    X = xp.empty((6, 6, N, th, tw, C), dtype=x.dtype)
    s = x.strides
    strided = xp.lib.stride_tricks.as_strided
    for a0, a1, rlo, rhi in _offset_runs(H, pad[0], th):
        for b0, b1, clo, chi in _offset_runs(W, pad[1], tw):
            blk = X[a0:a1, b0:b1]
            if rhi == rlo or chi == clo:
                blk[...] = 0
                continue
            r0, c0 = 4 * rlo + a0 - pad[0], 4 * clo + b0 - pad[1]
            blk[:, :, :, rlo:rhi, clo:chi] = strided(
                x[:, r0:, c0:], (a1 - a0, b1 - b0, N, rhi - rlo, chi - clo, C),
                (s[1], s[2], s[0], 4 * s[1], 4 * s[2], s[3]))
            blk[:, :, :, :rlo] = 0
            blk[:, :, :, rhi:] = 0
            blk[:, :, :, rlo:rhi, :clo] = 0
            blk[:, :, :, rlo:rhi, chi:] = 0
    return X


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
    """
    N, H, W, C = x.shape
    O = wm.shape[0]
    OH, OW = out
    th, tw = -(-OH // 4), -(-OW // 4)
    T = N * th * tw
    dtype = np.result_type(x.dtype, wm.dtype)
    KB, KG, KA = _mats(xp, dtype, 'KB', 'KG', 'KA')
    X = _gather_tiles(xp, x.astype(dtype, copy=False), pad, th, tw)
    V = (KB @ X.reshape(36, T * C)).reshape(36, T, C)
    del X
    # U[xi, c, o] = sum_k KG[xi, k] w[o, k, c]
    w9 = xp.ascontiguousarray(wm.reshape(O, 9, C).transpose(1, 2, 0)).reshape(9, C * O)
    U = (KG @ w9.astype(dtype, copy=False)).reshape(36, C, O)
    M = xp.matmul(V, U)                                            # (36, T, O)
    Y = (KA @ M.reshape(36, T * O)).reshape(4, 4, N, th, tw, O)
    del M
    full = xp.empty((N, th, 4, tw, 4, O), dtype=dtype)
    src = Y.transpose(2, 3, 0, 4, 1, 5)
    if bias is not None:
        xp.add(src, bias.astype(dtype, copy=False), out=full)
    else:
        full[...] = src
    y = full.reshape(N, 4 * th, 4 * tw, O)
    if (OH, OW) != (4 * th, 4 * tw):
        y = y[:, :OH, :OW]
    saved = None
    if keep[0] or keep[1]:
        saved = (V if keep[1] else None, U if keep[0] else None, (N, H, W, C), tuple(pad),
                 (OH, OW), (th, tw))
    return y, saved


def winograd_backward(xp, g, saved, need_x, need_w):
    """Gradients of :func:`winograd_forward` for the output gradient ``g`` (N, *out, O).

    Returns ``(gx, gwm)``: gx (N, H, W, C) (or None) and the weight gradient as an
    (O, 9*C) matrix in ``wm``'s column order (or None).
    """
    V, U, (N, H, W, C), pad, (OH, OW), (th, tw) = saved
    T = N * th * tw
    dtype = (V if V is not None else U).dtype
    O = g.shape[-1]
    KGt, KAt, KBt = _mats(xp, dtype, 'KGt', 'KAt', 'KBt')
    # g as 4x4 output tiles, tile-offset major: (16, T*O); zeros past the output edge
    gt = xp.empty((4, 4, N, th, tw, O), dtype=dtype)
    dst = gt.transpose(2, 3, 0, 4, 1, 5)                      # (N, th, 4, tw, 4, O) view
    gsrc = g.astype(dtype, copy=False)
    if (OH, OW) != (4 * th, 4 * tw):
        gfull = xp.zeros((N, 4 * th, 4 * tw, O), dtype=dtype)
        gfull[:, :OH, :OW] = gsrc
        gsrc = gfull
    dst[...] = gsrc.reshape(N, th, 4, tw, 4, O)
    dM = (KAt @ gt.reshape(16, T * O)).reshape(36, T, O)
    del gt
    gx = gwm = None
    if need_w:
        dU = xp.matmul(dM.transpose(0, 2, 1), V)                  # (36, O, C)
        gw9 = (KGt @ dU.reshape(36, O * C)).reshape(9, O, C)      # (k, o, c)
        gwm = xp.ascontiguousarray(gw9.transpose(1, 0, 2)).reshape(O, 9 * C)
    if need_x:
        dV = xp.matmul(dM, U.transpose(0, 2, 1))                  # (36, T, C)
        del dM
        dX = (KBt @ dV.reshape(36, T * C)).reshape(6, 6, N, th, tw, C)
        del dV
        # 6x6 tiles at stride 4 overlap by two rows and columns. Fold the overlaps while
        # the tiles are still offset-major (a shift by one tile along th or tw: long
        # contiguous runs), then place the disjoint 4x4 cores and the spill past the last
        # tile row/column (3x faster than adding strided 6x6 margins into the image).
        last_r, last_c = th - 1, tw - 1
        dX[0:2, :, :, 1:] += dX[4:6, :, :, :-1]
        dX[0:4, 0:2, :, :, 1:] += dX[0:4, 4:6, :, :, :-1]
        dX[4:6, 0:2, :, last_r, 1:] += dX[4:6, 4:6, :, last_r, :-1]
        gpad = xp.empty((N, 4 * th + 2, 4 * tw + 2, C), dtype=dtype)
        core = gpad[:, :4 * th, :4 * tw].reshape(N, th, 4, tw, 4, C)
        core[...] = dX[:4, :4].transpose(2, 3, 0, 4, 1, 5)
        gpad[:, 4 * th:, :4 * tw].reshape(N, 2, tw, 4, C)[...] = \
            dX[4:6, :4, :, last_r].transpose(2, 0, 3, 1, 4)
        gpad[:, :4 * th, 4 * tw:].reshape(N, th, 4, 2, C)[...] = \
            dX[:4, 4:6, :, :, last_c].transpose(2, 3, 0, 1, 4)
        gpad[:, 4 * th:, 4 * tw:] = dX[4:6, 4:6, :, last_r, last_c].transpose(2, 0, 1, 3)
        ph, pw = pad
        gx = gpad[:, ph:ph + H, pw:pw + W]
    return gx, gwm
