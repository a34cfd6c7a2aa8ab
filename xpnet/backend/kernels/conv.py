"""Convolution on a GPU as im2col (one kernel) + one cuBLAS GEMM, and the input gradient as
one GEMM + col2im written as a gather (each input element sums the columns that read it,
in a fixed order: deterministic, no atomics).

Layouts: the input is any strided (N, D, H, W, C) view (1-D and 2-D convolutions use
D = H = 1 or D = 1); the column matrix is (N*OD*OH*OW, K*C) with K = KD*KH*KW, its columns
ordered (channel, kernel offset) when ``c_first`` -- so that a channels-first weight
(O, C, *K) is the GEMM matrix (O, C*K) without a copy -- or (kernel offset, channel) for
channels-last weights (O, *K, C). col2im writes a C-contiguous (N, D, H, W, C) gradient.
"""
import numpy as np

from . import Family, blocks, ctype, run

__all__ = ['Geometry', 'im2col', 'col2im']

SOURCE = r'''
extern "C" __global__ void im2col(const T* x, T* col, i64 sN, i64 sD, i64 sH, i64 sW,
                                  i64 sC, int N, int D, int H, int W, int C, int KD, int KH,
                                  int KW, int OD, int OH, int OW, int sd, int sh, int sw,
                                  int pd, int ph, int pw, int dd, int dh, int dw,
                                  int c_first) {
    const i64 K = (i64)KD * KH * KW;
    const i64 cols = K * C;
    const i64 total = (i64)N * OD * OH * OW * cols;
    for (i64 idx = (i64)blockIdx.x * blockDim.x + threadIdx.x; idx < total;
         idx += (i64)gridDim.x * blockDim.x) {
        const i64 row = idx / cols;
        const i64 cc = idx - row * cols;
        const int c = (int)(c_first ? cc / K : cc % C);
        const i64 kk = c_first ? cc % K : cc / C;
        const int kx = (int)(kk % KW), ky = (int)((kk / KW) % KH), kz = (int)(kk / ((i64)KW * KH));
        i64 n;
        int oz, oy, ox, unused;
        xp_unravel5(row, OD, OH, OW, 1, n, oz, oy, ox, unused);
        const int iz = oz * sd - pd + kz * dd, iy = oy * sh - ph + ky * dh,
                  ix = ox * sw - pw + kx * dw;
        T v = (T)0;
        if (iz >= 0 && iz < D && iy >= 0 && iy < H && ix >= 0 && ix < W)
            v = x[n * sN + iz * sD + iy * sH + ix * sW + c * sC];
        col[idx] = v;
    }
}

// Each input element sums the column entries that read it (a gather: deterministic).
extern "C" __global__ void col2im(const T* col, T* gx, int N, int D, int H, int W, int C,
                                  int KD, int KH, int KW, int OD, int OH, int OW, int sd,
                                  int sh, int sw, int pd, int ph, int pw, int dd, int dh,
                                  int dw, int c_first) {
    const i64 K = (i64)KD * KH * KW;
    const i64 cols = K * C;
    const i64 total = (i64)N * D * H * W * C;
    for (i64 idx = (i64)blockIdx.x * blockDim.x + threadIdx.x; idx < total;
         idx += (i64)gridDim.x * blockDim.x) {
        i64 n;
        int iz, iy, ix, c;
        xp_unravel5(idx, D, H, W, C, n, iz, iy, ix, c);
        T acc = (T)0;
        for (int kz = 0; kz < KD; ++kz) {
            const int oz = xp_window_of(iz, kz, pd, dd, sd, OD);
            if (oz < 0) continue;
            for (int ky = 0; ky < KH; ++ky) {
                const int oy = xp_window_of(iy, ky, ph, dh, sh, OH);
                if (oy < 0) continue;
                for (int kx = 0; kx < KW; ++kx) {
                    const int ox = xp_window_of(ix, kx, pw, dw, sw, OW);
                    if (ox < 0) continue;
                    const i64 row = ((n * OD + oz) * OH + oy) * OW + ox;
                    const i64 kk = ((i64)kz * KH + ky) * KW + kx;
                    acc += col[row * cols + (c_first ? (i64)c * K + kk : kk * C + c)];
                }
            }
        }
        gx[idx] = acc;
    }
}
'''

FAMILY = Family('conv', SOURCE, [{'T': 'float'}, {'T': 'double'}])


class Geometry:
    """A convolution's sizes padded to three spatial axes: ``size``, ``kernel``,
    ``stride``, ``pad``, ``dilate``, ``out`` (3-tuples), ``N``, ``C`` and ``c_first``."""

    def __init__(self, N, C, size, kernel, stride, pad, dilate, out, c_first):
        lead = 3 - len(size)

        def three(v, fill):
            return (fill,) * lead + tuple(int(a) for a in v)
        self.N, self.C, self.c_first = int(N), int(C), bool(c_first)
        self.size, self.kernel = three(size, 1), three(kernel, 1)
        self.stride, self.pad = three(stride, 1), three(pad, 0)
        self.dilate, self.out = three(dilate, 1), three(out, 1)
        self.K = int(np.prod(self.kernel))
        self.rows = self.N * int(np.prod(self.out))

    def ints(self):
        return tuple(np.int32(v) for v in (self.N, *self.size, self.C, *self.kernel, *self.out,
                                           *self.stride, *self.pad, *self.dilate,
                                           self.c_first))


def im2col(xp, x, geo):
    """The column matrix (rows, K*C) of the channels-last input view ``x`` (N, *S, C)."""
    col = xp.empty((geo.rows, geo.K * geo.C), dtype=x.dtype)
    x5 = x if x.ndim == 5 else _expand(xp, x, geo)

    def cuda():
        item = x5.itemsize
        strides = tuple(np.int64(s // item) for s in x5.strides)
        FAMILY.function(xp, 'im2col', T=ctype(x.dtype))(
            (blocks(col.size),), (256,), (x5, col) + strides + geo.ints())

    def standin():
        col[...] = _im2col_standin(xp, x5, geo)
    run(xp, 'conv.im2col', cuda, standin)
    return col


def _expand(xp, x, geo):
    """A 5-d view (N, D, H, W, C) of an (N, *S, C) view with fewer spatial axes (unit axes
    added: no copy)."""
    lead = 3 - (x.ndim - 2)
    return xp.expand_dims(x, tuple(range(1, 1 + lead))) if lead else x


def _im2col_standin(xp, x5, geo):
    N, C = geo.N, geo.C
    (D, H, W), (KD, KH, KW) = geo.size, geo.kernel
    (sd, sh, sw), (pd, ph, pw), (dd, dh, dw) = geo.stride, geo.pad, geo.dilate
    OD, OH, OW = geo.out
    ext = [max(s + 2 * p, (o - 1) * st + (k - 1) * dl + 1) for s, p, o, st, k, dl in
           zip(geo.size, geo.pad, geo.out, geo.stride, geo.kernel, geo.dilate)]
    xpad = xp.zeros((N, ext[0], ext[1], ext[2], C), dtype=x5.dtype)
    xpad[:, pd:pd + D, ph:ph + H, pw:pw + W] = x5
    pieces = []
    for kz in range(KD):
        for ky in range(KH):
            for kx in range(KW):
                z0, y0, x0 = kz * dd, ky * dh, kx * dw
                pieces.append(xpad[:, z0:z0 + (OD - 1) * sd + 1:sd,
                                   y0:y0 + (OH - 1) * sh + 1:sh, x0:x0 + (OW - 1) * sw + 1:sw])
    cols = xp.stack(pieces, axis=-2)                   # (N, OD, OH, OW, K, C)
    if geo.c_first:
        cols = xp.swapaxes(cols, -1, -2)               # (N, OD, OH, OW, C, K)
    return cols.reshape(geo.rows, geo.K * C)


def col2im(xp, col, geo, dtype):
    """The C-contiguous (N, *S, C) input gradient from the column gradient ``col``
    (rows, K*C): each input element sums the column entries that read it."""
    shape = (geo.N,) + geo.size + (geo.C,)
    gx = xp.empty(shape, dtype=dtype)

    def cuda():
        FAMILY.function(xp, 'col2im', T=ctype(dtype))(
            (blocks(gx.size),), (256,), (col, gx) + geo.ints())

    def standin():
        gx[...] = _col2im_standin(xp, col, geo, dtype)
    run(xp, 'conv.col2im', cuda, standin)
    return gx


def _col2im_standin(xp, col, geo, dtype):
    N, C = geo.N, geo.C
    (D, H, W), (KD, KH, KW) = geo.size, geo.kernel
    (sd, sh, sw), (pd, ph, pw), (dd, dh, dw) = geo.stride, geo.pad, geo.dilate
    OD, OH, OW = geo.out
    c6 = col.reshape((N, OD, OH, OW) + ((C, geo.K) if geo.c_first else (geo.K, C)))
    if geo.c_first:
        c6 = xp.swapaxes(c6, -1, -2)                   # (N, OD, OH, OW, K, C)
    ext = [max(s + 2 * p, (o - 1) * st + (k - 1) * dl + 1) for s, p, o, st, k, dl in
           zip(geo.size, geo.pad, geo.out, geo.stride, geo.kernel, geo.dilate)]
    buf = xp.zeros((N, ext[0], ext[1], ext[2], C), dtype=dtype)
    k = 0
    for kz in range(KD):
        for ky in range(KH):
            for kx in range(KW):
                z0, y0, x0 = kz * dd, ky * dh, kx * dw
                buf[:, z0:z0 + (OD - 1) * sd + 1:sd, y0:y0 + (OH - 1) * sh + 1:sh,
                    x0:x0 + (OW - 1) * sw + 1:sw] += c6[..., k, :]
                k += 1
    return buf[:, pd:pd + D, ph:ph + H, pw:pw + W]
