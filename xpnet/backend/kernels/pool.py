"""Max and average pooling over channels-last windows, one kernel forward and one backward.

The input is any strided (N, D, H, W, C) view (fewer spatial axes: unit axes in front);
outputs and input gradients are C-contiguous channels-last. Max pooling keeps, per output,
the offset of the first maximum in row-major window order (padding never wins; a window
without input gives 0 and no gradient), and its backward is a gather: each input element
sums the output gradients of the windows whose maximum it was (deterministic). Average
pooling divides by the window clipped to the padded extent (``count_include_pad``) or
by the number of input elements in it, as :mod:`xpnet.ops.pool` does.
"""
import numpy as np

from . import Family, blocks, ctype, run

__all__ = ['max_pool', 'max_pool_backward', 'avg_pool', 'avg_pool_backward']

SOURCE = r'''
#define XP_POOL_ARGS int N, int D, int H, int W, int C, int KD, int KH, int KW, int OD, \
    int OH, int OW, int sd, int sh, int sw, int pd, int ph, int pw
#define XP_FOR_OUTPUTS for (i64 idx = (i64)blockIdx.x * blockDim.x + threadIdx.x; \
    idx < (i64)N * OD * OH * OW * C; idx += (i64)gridDim.x * blockDim.x)
#define XP_FOR_INPUTS for (i64 idx = (i64)blockIdx.x * blockDim.x + threadIdx.x; \
    idx < (i64)N * D * H * W * C; idx += (i64)gridDim.x * blockDim.x)
// The windows of output (oz, oy, ox) over the input: body runs for each input element
// (iz, iy, ix) inside it at kernel offset (kz, ky, kx).
#define XP_FOR_WINDOW(body) \
    for (int kz = 0; kz < KD; ++kz) { const int iz = oz * sd - pd + kz; \
        if (iz < 0 || iz >= D) continue; \
        for (int ky = 0; ky < KH; ++ky) { const int iy = oy * sh - ph + ky; \
            if (iy < 0 || iy >= H) continue; \
            for (int kx = 0; kx < KW; ++kx) { const int ix = ox * sw - pw + kx; \
                if (ix < 0 || ix >= W) continue; body } } }
// The outputs whose windows hold input (iz, iy, ix): body runs for each output
// (oz, oy, ox) at kernel offset (kz, ky, kx).
#define XP_FOR_OUTPUTS_OF(body) \
    for (int kz = 0; kz < KD; ++kz) { const int oz = xp_window_of(iz, kz, pd, 1, sd, OD); \
        if (oz < 0) continue; \
        for (int ky = 0; ky < KH; ++ky) { const int oy = xp_window_of(iy, ky, ph, 1, sh, OH); \
            if (oy < 0) continue; \
            for (int kx = 0; kx < KW; ++kx) { \
                const int ox = xp_window_of(ix, kx, pw, 1, sw, OW); \
                if (ox < 0) continue; \
                const i64 o = (((n * OD + oz) * OH + oy) * OW + ox) * C + c; body } } }

__device__ __forceinline__ int xp_window_count(int o, int s, int p, int k, int size,
                                               int include_pad) {
    const int start = o * s - p;
    int cnt = include_pad ? min(start + k, size + p) - start
                          : min(start + k, size) - max(start, 0);
    return cnt > 0 ? cnt : 0;
}

__device__ __forceinline__ int xp_divisor(int oz, int oy, int ox, XP_POOL_ARGS,
                                          int include_pad) {
    const int div = xp_window_count(oz, sd, pd, KD, D, include_pad) *
                    xp_window_count(oy, sh, ph, KH, H, include_pad) *
                    xp_window_count(ox, sw, pw, KW, W, include_pad);
    return div > 0 ? div : 1;
}

extern "C" __global__ void max_pool(const T* x, T* y, int* arg, i64 sN, i64 sD, i64 sH,
                                    i64 sW, i64 sC, XP_POOL_ARGS) {
    XP_FOR_OUTPUTS {
        i64 n;
        int oz, oy, ox, c;
        xp_unravel5(idx, OD, OH, OW, C, n, oz, oy, ox, c);
        T best = (T)0;
        int a = -1;
        XP_FOR_WINDOW(
            const T v = x[n * sN + iz * sD + iy * sH + ix * sW + c * sC];
            if (a < 0 || v > best || (v != v && best == best)) {
                best = v;
                a = (kz * KH + ky) * KW + kx;
            })
        y[idx] = best;
        arg[idx] = a;
    }
}

extern "C" __global__ void max_pool_grad(const T* g, const int* arg, T* gx, XP_POOL_ARGS) {
    XP_FOR_INPUTS {
        i64 n;
        int iz, iy, ix, c;
        xp_unravel5(idx, D, H, W, C, n, iz, iy, ix, c);
        T acc = (T)0;
        XP_FOR_OUTPUTS_OF(if (arg[o] == (kz * KH + ky) * KW + kx) acc += g[o];)
        gx[idx] = acc;
    }
}

extern "C" __global__ void avg_pool(const T* x, T* y, i64 sN, i64 sD, i64 sH, i64 sW,
                                    i64 sC, XP_POOL_ARGS, int include_pad, int is_sum) {
    XP_FOR_OUTPUTS {
        i64 n;
        int oz, oy, ox, c;
        xp_unravel5(idx, OD, OH, OW, C, n, oz, oy, ox, c);
        T acc = (T)0;
        XP_FOR_WINDOW(acc += x[n * sN + iz * sD + iy * sH + ix * sW + c * sC];)
        if (!is_sum)
            acc /= (T)xp_divisor(oz, oy, ox, N, D, H, W, C, KD, KH, KW, OD, OH, OW, sd, sh,
                                 sw, pd, ph, pw, include_pad);
        y[idx] = acc;
    }
}

extern "C" __global__ void avg_pool_grad(const T* g, T* gx, XP_POOL_ARGS, int include_pad,
                                         int is_sum) {
    XP_FOR_INPUTS {
        i64 n;
        int iz, iy, ix, c;
        xp_unravel5(idx, D, H, W, C, n, iz, iy, ix, c);
        T acc = (T)0;
        XP_FOR_OUTPUTS_OF(
            T v = g[o];
            if (!is_sum)
                v /= (T)xp_divisor(oz, oy, ox, N, D, H, W, C, KD, KH, KW, OD, OH, OW, sd, sh,
                                   sw, pd, ph, pw, include_pad);
            acc += v;)
        gx[idx] = acc;
    }
}
'''

FAMILY = Family('pool', SOURCE, [{'T': 'float'}, {'T': 'double'}])


def _three(v, fill):
    return (fill,) * (3 - len(v)) + tuple(int(a) for a in v)


class _Geo:
    def __init__(self, x, kernel, stride, pad, out):
        self.N, self.C = x.shape[0], x.shape[-1]
        self.size = _three(x.shape[1:-1], 1)
        self.kernel, self.stride = _three(kernel, 1), _three(stride, 1)
        self.pad, self.out = _three(pad, 0), _three(out, 1)

    def ints(self):
        return tuple(np.int32(v) for v in (self.N, *self.size, self.C, *self.kernel,
                                           *self.out, *self.stride, *self.pad))

    def x5(self, xp, x):
        lead = 3 - (x.ndim - 2)
        return xp.expand_dims(x, tuple(range(1, 1 + lead))) if lead else x

    def out_shape(self, nd):
        return (self.N,) + self.out[3 - nd:] + (self.C,)


def _strides(x5):
    return tuple(np.int64(s // x5.itemsize) for s in x5.strides)


def max_pool(xp, x, kernel, stride, pad, out):
    """``(y, arg)``: max pooling of the channels-last view ``x`` (N, *S, C); ``y`` is
    C-contiguous (N, *out, C), ``arg`` the int32 window offset of each maximum (-1: empty
    window)."""
    geo = _Geo(x, kernel, stride, pad, out)
    nd = x.ndim - 2
    y = xp.empty(geo.out_shape(nd), dtype=x.dtype)
    arg = xp.empty(y.shape, dtype=np.int32)
    x5 = geo.x5(xp, x)

    def cuda():
        FAMILY.function(xp, 'max_pool', T=ctype(x.dtype))(
            (blocks(y.size),), (256,), (x5, y, arg) + _strides(x5) + geo.ints())

    def standin():
        win = _windows(xp, x5, geo, -np.inf)                 # (N, OD, OH, OW, K, C)
        empty = xp.isneginf(win).all(axis=-2) if x.dtype.kind == 'f' else None
        a = xp.argmax(win, axis=-2).astype(np.int32)
        best = xp.take_along_axis(win, a[..., None, :].astype(np.int64), axis=-2)[..., 0, :]
        y[...] = xp.where(empty, 0, best).reshape(y.shape)
        arg[...] = xp.where(empty, -1, a).reshape(y.shape)
    run(xp, 'pool.max_pool', cuda, standin)
    return y, arg


def max_pool_backward(xp, g, arg, x_shape, kernel, stride, pad, out, dtype):
    """The C-contiguous input gradient (``x_shape``) of :func:`max_pool` for the C-contiguous
    output gradient ``g``."""
    gx = xp.empty(x_shape, dtype=dtype)
    geo = _Geo(gx, kernel, stride, pad, out)

    def cuda():
        FAMILY.function(xp, 'max_pool_grad', T=ctype(dtype))(
            (blocks(gx.size),), (256,), (g, arg, gx) + geo.ints())

    def standin():
        K = int(np.prod(geo.kernel))
        g6 = g.reshape((geo.N,) + geo.out + (1, geo.C))
        a6 = arg.reshape((geo.N,) + geo.out + (1, geo.C))
        hits = (a6 == xp.arange(K).reshape(K, 1)) * g6        # (N, OD, OH, OW, K, C)
        gx[...] = _scatter_windows(xp, hits, geo, dtype).reshape(x_shape)
    run(xp, 'pool.max_pool_grad', cuda, standin)
    return gx


def avg_pool(xp, x, kernel, stride, pad, out, include_pad, is_sum):
    """Average (or sum) pooling of the channels-last view ``x``; C-contiguous output."""
    geo = _Geo(x, kernel, stride, pad, out)
    y = xp.empty(geo.out_shape(x.ndim - 2), dtype=x.dtype)
    x5 = geo.x5(xp, x)

    def cuda():
        FAMILY.function(xp, 'avg_pool', T=ctype(x.dtype))(
            (blocks(y.size),), (256,), (x5, y) + _strides(x5) + geo.ints() +
            (np.int32(include_pad), np.int32(is_sum)))

    def standin():
        total = _windows(xp, x5, geo, 0).sum(axis=-2)
        if not is_sum:
            total = total / _divisor(xp, geo, include_pad, x.dtype)
        y[...] = total.reshape(y.shape)
    run(xp, 'pool.avg_pool', cuda, standin)
    return y


def avg_pool_backward(xp, g, x_shape, kernel, stride, pad, out, include_pad, is_sum, dtype):
    """The C-contiguous input gradient of :func:`avg_pool`."""
    gx = xp.empty(x_shape, dtype=dtype)
    geo = _Geo(gx, kernel, stride, pad, out)

    def cuda():
        FAMILY.function(xp, 'avg_pool_grad', T=ctype(dtype))(
            (blocks(gx.size),), (256,), (g, gx) + geo.ints() +
            (np.int32(include_pad), np.int32(is_sum)))

    def standin():
        K = int(np.prod(geo.kernel))
        g5 = g.reshape((geo.N,) + geo.out + (geo.C,))
        if not is_sum:
            g5 = g5 / _divisor(xp, geo, include_pad, dtype)
        hits = xp.broadcast_to(g5[..., None, :], g5.shape[:-1] + (K, geo.C))
        gx[...] = _scatter_windows(xp, hits, geo, dtype).reshape(x_shape)
    run(xp, 'pool.avg_pool_grad', cuda, standin)
    return gx


# ---- stand-in helpers ---------------------------------------------------------------------------

def _extent(geo):
    return [max(s + 2 * p, (o - 1) * st + k) for s, p, o, st, k in
            zip(geo.size, geo.pad, geo.out, geo.stride, geo.kernel)]


def _slices(geo, kz, ky, kx):
    (sd, sh, sw), (OD, OH, OW) = geo.stride, geo.out
    return (slice(None), slice(kz, kz + (OD - 1) * sd + 1, sd),
            slice(ky, ky + (OH - 1) * sh + 1, sh), slice(kx, kx + (OW - 1) * sw + 1, sw))


def _offsets(geo):
    KD, KH, KW = geo.kernel
    return [(kz, ky, kx) for kz in range(KD) for ky in range(KH) for kx in range(KW)]


def _windows(xp, x5, geo, fill):
    """(N, OD, OH, OW, K, C): every window's elements (padding = ``fill``)."""
    (D, H, W), (pd, ph, pw) = geo.size, geo.pad
    ext = _extent(geo)
    buf = xp.full((geo.N, ext[0], ext[1], ext[2], geo.C), fill, dtype=x5.dtype)
    buf[:, pd:pd + D, ph:ph + H, pw:pw + W] = x5
    return xp.stack([buf[_slices(geo, *o)] for o in _offsets(geo)], axis=-2)


def _scatter_windows(xp, vals, geo, dtype):
    """Sum (N, OD, OH, OW, K, C) window values back onto the (N, D, H, W, C) input."""
    (D, H, W), (pd, ph, pw) = geo.size, geo.pad
    ext = _extent(geo)
    buf = xp.zeros((geo.N, ext[0], ext[1], ext[2], geo.C), dtype=dtype)
    for k, o in enumerate(_offsets(geo)):
        buf[_slices(geo, *o)] += vals[..., k, :]
    return buf[:, pd:pd + D, ph:ph + H, pw:pw + W]


def _divisor(xp, geo, include_pad, dtype):
    counts = []
    for x, k, s, p, o in zip(geo.size, geo.kernel, geo.stride, geo.pad, geo.out):
        start = np.arange(o) * s - p
        if include_pad:
            cnt = np.minimum(start + k, x + p) - start
        else:
            cnt = np.minimum(start + k, x) - np.maximum(start, 0)
        counts.append(np.maximum(cnt, 0))
    div = np.multiply.outer(np.multiply.outer(counts[0], counts[1]), counts[2]).astype(dtype)
    div[div == 0] = 1
    return xp.asarray(div[..., None])
