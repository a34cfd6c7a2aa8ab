"""Elementwise chains: bias + activation, activation gradient + bias gradient, row scaling,
and dropout with masks drawn on the device from a counter-based generator (Philox4x32-10,
keyed by ``(seed, counter)``: the same numbers from the CUDA kernel and from the NumPy
stand-in, and nothing to keep between calls but the counter).

Activation codes: 0 none, 1 relu, 2 tanh, 3 sigmoid (derivatives taken from the output).
"""
import numpy as np

from . import Family, blocks, counters, run

__all__ = ['ACTIVATIONS', 'bias_act', 'act_bias_grad', 'column_sum', 'scale_rows',
           'dropout', 'dropout_mask', 'philox_words', 'uniform_from_words']

ACTIVATIONS = {None: 0, 'relu': 1, 'tanh': 2, 'sigmoid': 3}

SOURCE = r'''
__device__ __forceinline__ T xp_act(T v, int act) {
    if (act == 1) return v < (T)0 ? (T)0 : v;          // NaN stays NaN, as NumPy's maximum
    if (act == 2) return tanh(v);
    if (act == 3) return xp_sigmoid(v);
    return v;
}

__device__ __forceinline__ T xp_act_grad(T g, T y, int act) {
    if (act == 1) return g * (T)(y > (T)0);
    if (act == 2) return g * ((T)1 - y * y);
    if (act == 3) return g * (y * ((T)1 - y));
    return g;
}

// y (rows, cols) = act(y + bias) in place; bias may be NULL.
extern "C" __global__ void bias_act(T* y, const T* bias, i64 rows, int cols, int act) {
    const i64 n = rows * cols;
    for (i64 k = (i64)blockIdx.x * blockDim.x + threadIdx.x; k < n;
         k += (i64)gridDim.x * blockDim.x) {
        T v = y[k];
        if (bias) v += bias[k % cols];
        y[k] = xp_act(v, act);
    }
}

// gz = act'(y) * g (if gz is not NULL) and gb[c] = sum over rows of gz (if gb is not
// NULL): grid (ceil(cols / 32), row blocks), block (32, 8), see xp_column_totals.
extern "C" __global__ void act_bias_grad(const T* g, const T* y, T* gz, T* gb,
                                         double* partial, unsigned int* counter, i64 rows,
                                         int cols, int act, i64 rows_per_block) {
    const int c = blockIdx.x * 32 + threadIdx.x;
    const i64 r0 = (i64)blockIdx.y * rows_per_block;
    const i64 r1 = min(r0 + rows_per_block, rows);
    double acc = 0.0;
    if (c < cols) {
        for (i64 r = r0 + threadIdx.y; r < r1; r += blockDim.y) {
            const i64 k = r * cols + c;
            const T v = xp_act_grad(g[k], act ? y[k] : (T)0, act);
            if (gz) gz[k] = v;
            acc += (double)v;
        }
    }
    double total, unused;
    if (gb && xp_column_totals(acc, 0.0, c, cols, partial, counter, &total, &unused))
        gb[c] = (T)total;
}

// out[r, c] = a[r, c] * s[r]
extern "C" __global__ void scale_rows(const T* a, const T* s, T* out, i64 rows, int cols) {
    const i64 n = rows * cols;
    for (i64 k = (i64)blockIdx.x * blockDim.x + threadIdx.x; k < n;
         k += (i64)gridDim.x * blockDim.x)
        out[k] = a[k] * s[k / cols];
}

// Element i keeps its value (times `scale`) when the uniform number of word i % 4 of
// Philox(counter = base + i / 4, key) is >= p; y = x * (keep ? scale : 0).
// With x == NULL, y is the mask itself.
extern "C" __global__ void dropout(const T* x, T* y, i64 n, u64 key, u64 base, float p,
                                   T scale) {
    const i64 nblk = (n + 3) / 4;
    const uint2 k2 = make_uint2((u32)key, (u32)(key >> 32));
    for (i64 b = (i64)blockIdx.x * blockDim.x + threadIdx.x; b < nblk;
         b += (i64)gridDim.x * blockDim.x) {
        const u64 ctr = base + (u64)b;
        const uint4 w = xp_philox(make_uint4((u32)ctr, (u32)(ctr >> 32), 0u, 0u), k2);
        const u32 words[4] = {w.x, w.y, w.z, w.w};
        #pragma unroll
        for (int j = 0; j < 4; ++j) {
            const i64 i = 4 * b + j;
            if (i < n) {
                const T m = xp_uniform(words[j]) >= p ? scale : (T)0;
                y[i] = x ? x[i] * m : m;
            }
        }
    }
}
'''

FAMILY = Family('elementwise', SOURCE, [{'T': 'float'}, {'T': 'double'}])


def _types(a):
    return {'T': 'float' if a.dtype == np.float32 else 'double'}


# ---- bias + activation ----------------------------------------------------------------------

def bias_act(xp, y, bias, act):
    """``y = act(y + bias)`` in place on a C-contiguous (rows, cols) array; ``bias`` (cols,)
    or None; ``act`` a name of :data:`ACTIVATIONS`."""
    code = ACTIVATIONS[act]
    rows, cols = y.shape

    def cuda():
        FAMILY.function(xp, 'bias_act', **_types(y))(
            (blocks(y.size),), (256,), (y, bias, np.int64(rows), np.int32(cols),
                                        np.int32(code)))
    run(xp, 'elementwise.bias_act', cuda, lambda: _bias_act_standin(xp, y, bias, code))
    return y


def _bias_act_standin(xp, y, bias, code):
    if bias is not None:
        y += bias
    if code == 1:
        xp.maximum(y, 0, out=y)
    elif code == 2:
        xp.tanh(y, out=y)
    elif code == 3:
        y[...] = 1 / (1 + xp.exp(-y))


# ---- activation gradient + bias gradient ---------------------------------------------------

def act_bias_grad(xp, g, y, act, want_gz=True, want_gb=True):
    """``(gz, gb)`` of a Dense layer's backward: ``gz = act'(y) * g`` (None unless
    ``want_gz``) and ``gb = gz.sum(axis=0)`` (None unless ``want_gb``), deterministic.
    ``g`` and ``y`` are C-contiguous (rows, cols)."""
    code = ACTIVATIONS[act]
    rows, cols = g.shape
    gz = xp.empty_like(g) if want_gz and code else None
    gb = xp.empty(cols, dtype=g.dtype) if want_gb else None
    if gz is None and gb is None:
        return (g if want_gz else None), None

    def cuda():
        nby = int(max(1, min(256, rows // 256)))
        per = -(-rows // nby)
        partial = xp.empty((2 * nby, cols), dtype=np.float64) if gb is not None else None
        nbx = -(-cols // 32)
        FAMILY.function(xp, 'act_bias_grad', **_types(g))(
            (nbx, nby), (32, 8), (g, y, gz, gb, partial, counters(xp, nbx), np.int64(rows),
                                  np.int32(cols), np.int32(code), np.int64(per)))

    def standin():
        v = _act_grad_standin(xp, g, y, code)
        if gz is not None:
            gz[...] = v
        if gb is not None:
            gb[...] = v.sum(axis=0, dtype=np.float64).astype(g.dtype)
    run(xp, 'elementwise.act_bias_grad', cuda, standin)
    if not want_gz:
        return None, gb
    return (gz if gz is not None else g), gb


def column_sum(xp, g):
    """``g.sum(axis=0)`` of a C-contiguous (rows, cols) array as one deterministic kernel
    (float64 partial sums)."""
    return act_bias_grad(xp, g, None, None, want_gz=False)[1]


def _act_grad_standin(xp, g, y, code):
    if code == 1:
        return g * (y > 0)
    if code == 2:
        return g * (1 - y * y)
    if code == 3:
        return g * (y * (1 - y))
    return g


# ---- row scaling -------------------------------------------------------------------------------

def scale_rows(xp, a, s):
    """A new array ``a * s[:, None]`` for a C-contiguous (rows, cols) ``a``."""
    out = xp.empty_like(a)
    rows, cols = a.shape

    def cuda():
        FAMILY.function(xp, 'scale_rows', **_types(a))(
            (blocks(a.size),), (256,), (a, s, out, np.int64(rows), np.int32(cols)))

    def standin():
        xp.multiply(a, s.reshape(-1, 1), out=out)
    run(xp, 'elementwise.scale_rows', cuda, standin)
    return out


# ---- dropout ------------------------------------------------------------------------------------

_M0, _M1, _W0, _W1 = 0xD2511F53, 0xCD9E8D57, 0x9E3779B9, 0xBB67AE85
_LOW = 0xFFFFFFFF
_BITS64 = (1 << 64) - 1          # keys and counters are taken modulo 2**64, as philox_words


def philox_words(xp, n, key, base):
    """The first ``n`` uint32 words of Philox4x32-10 with ``key`` (64 bits) for counters
    ``base, base + 1, ...`` (four words each), as the CUDA kernel draws them."""
    nblk = -(-n // 4)
    ctr = xp.arange(nblk, dtype=np.uint64) + np.uint64(base & _BITS64)
    c0 = (ctr & np.uint64(_LOW)).astype(np.uint32)
    c1 = (ctr >> np.uint64(32)).astype(np.uint32)
    c2 = xp.zeros(nblk, dtype=np.uint32)
    c3 = xp.zeros(nblk, dtype=np.uint32)
    k0, k1 = key & _LOW, (key >> 32) & _LOW
    for r in range(10):
        if r:
            k0, k1 = (k0 + _W0) & _LOW, (k1 + _W1) & _LOW
        p0 = c0.astype(np.uint64) * np.uint64(_M0)
        p1 = c2.astype(np.uint64) * np.uint64(_M1)
        hi0, lo0 = (p0 >> np.uint64(32)).astype(np.uint32), (p0 & np.uint64(_LOW)).astype(
            np.uint32)
        hi1, lo1 = (p1 >> np.uint64(32)).astype(np.uint32), (p1 & np.uint64(_LOW)).astype(
            np.uint32)
        c0, c1, c2, c3 = hi1 ^ c1 ^ np.uint32(k0), lo1, hi0 ^ c3 ^ np.uint32(k1), lo0
    return xp.stack([c0, c1, c2, c3], axis=1).reshape(-1)[:n]


def uniform_from_words(xp, words):
    """Uniform float32 numbers in [0, 1) from uint32 words (their top 24 bits)."""
    return (words >> np.uint32(8)).astype(np.float32) * np.float32(2.0 ** -24)


def dropout(xp, x, p, key, base):
    """``x * mask`` for the dropout mask of rate ``p`` drawn with Philox at
    ``(key, base)`` (scale ``1 / (1 - p)``); ``x`` is C-contiguous."""
    return _dropout(xp, x, x.shape, x.dtype, p, key, base)


def dropout_mask(xp, shape, dtype, p, key, base):
    """The dropout mask itself (values 0 or ``1 / (1 - p)``), as :func:`dropout` draws it."""
    return _dropout(xp, None, shape, dtype, p, key, base)


def _dropout(xp, x, shape, dtype, p, key, base):
    dtype = np.dtype(dtype)
    y = xp.empty(shape, dtype=dtype)
    n = y.size
    scale = dtype.type(1.0 / (1.0 - p))

    def cuda():
        FAMILY.function(xp, 'dropout', **_types(y))(
            (blocks(-(-n // 4)),), (256,), (x, y, np.int64(n), np.uint64(key & _BITS64),
                                            np.uint64(base & _BITS64), np.float32(p), scale))

    def standin():
        u = uniform_from_words(xp, philox_words(xp, n, key, base)).reshape(shape)
        mask = xp.where(u >= np.float32(p), scale, dtype.type(0)).astype(dtype)
        if x is None:
            y[...] = mask
        else:
            xp.multiply(x, mask, out=y)
    run(xp, 'elementwise.dropout', cuda, standin)
    return y
