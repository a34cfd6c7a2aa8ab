"""Batch normalization in training mode (optionally followed by a ReLU) on a C-contiguous
(rows, channels) matrix: two kernels forward (the per-channel statistics with the running
averages updated in place; the normalization), two backward (the per-channel sums, which
are also the gamma and beta gradients; the input gradient).

Statistics are float64 sums of ``x - x[0, c]`` (a shift that keeps ``E[d^2] - E[d]^2``
accurate when the mean is large against the spread), over row blocks fixed by the shape,
combined in block order: the same bits on every run.
"""
import numpy as np

from . import Family, blocks, counters, ctype, run

__all__ = ['batch_norm_forward', 'batch_norm_backward']

SOURCE = r'''
// Per-channel mean, biased variance and 1/sqrt(var + eps); running averages updated when
// run_mean is not NULL. Grid (ceil(C / 32), row blocks), block (32, 8).
extern "C" __global__ void bn_stats(const T* x, i64 R, int C, i64 rows_per_block,
                                    double* partial, unsigned int* counter, T* mean, T* var,
                                    T* invstd, T* run_mean, T* run_var, T momentum, double eps) {
    const int c = blockIdx.x * 32 + threadIdx.x;
    const i64 r0 = (i64)blockIdx.y * rows_per_block;
    const i64 r1 = min(r0 + rows_per_block, R);
    double a1 = 0.0, a2 = 0.0;
    if (c < C) {
        const double shift = (double)x[c];
        for (i64 r = r0 + threadIdx.y; r < r1; r += blockDim.y) {
            const double d = (double)x[r * C + c] - shift;
            a1 += d;
            a2 += d * d;
        }
    }
    double t1, t2;
    if (!xp_column_totals(a1, a2, c, C, partial, counter, &t1, &t2)) return;
    const double md = t1 / (double)R;
    double v = t2 / (double)R - md * md;
    if (v < 0.0) v = 0.0;
    const T m = (T)((double)x[c] + md);
    mean[c] = m;
    var[c] = (T)v;
    invstd[c] = (T)(1.0 / sqrt(v + eps));
    if (run_mean) {
        run_mean[c] = run_mean[c] * momentum + ((T)1 - momentum) * m;
        run_var[c] = run_var[c] * momentum + ((T)1 - momentum) * (T)v;
    }
}

// y = (x - mean) * invstd * gamma + beta, then max(y, 0) when relu (gamma/beta may be NULL).
extern "C" __global__ void bn_apply(const T* x, T* y, const T* mean, const T* invstd,
                                    const T* gamma, const T* beta, i64 R, int C, int relu) {
    const i64 n = R * C;
    for (i64 k = (i64)blockIdx.x * blockDim.x + threadIdx.x; k < n;
         k += (i64)gridDim.x * blockDim.x) {
        const int c = (int)(k % C);
        const T s = gamma ? gamma[c] * invstd[c] : invstd[c];
        T v = (x[k] - mean[c]) * s;
        if (beta) v += beta[c];
        y[k] = (relu && v < (T)0) ? (T)0 : v;
    }
}

__device__ __forceinline__ T xp_bn_g(const T* g, const T* y, i64 k, int relu) {
    return relu ? g[k] * (T)(y[k] > (T)0) : g[k];
}

// dbeta = sum(g'), dgamma = sum(g' * xhat) per channel, g' = g masked by the ReLU.
extern "C" __global__ void bn_grad_stats(const T* g, const T* y, const T* x, const T* mean,
                                         const T* invstd, i64 R, int C, i64 rows_per_block,
                                         double* partial, unsigned int* counter, T* dgamma,
                                         T* dbeta, int relu) {
    const int c = blockIdx.x * 32 + threadIdx.x;
    const i64 r0 = (i64)blockIdx.y * rows_per_block;
    const i64 r1 = min(r0 + rows_per_block, R);
    double a1 = 0.0, a2 = 0.0;
    if (c < C) {
        const T m = mean[c], is = invstd[c];
        for (i64 r = r0 + threadIdx.y; r < r1; r += blockDim.y) {
            const i64 k = r * C + c;
            const T gv = xp_bn_g(g, y, k, relu);
            a1 += (double)gv;
            a2 += (double)(gv * ((x[k] - m) * is));
        }
    }
    double t1, t2;
    if (xp_column_totals(a1, a2, c, C, partial, counter, &t1, &t2)) {
        dbeta[c] = (T)t1;
        dgamma[c] = (T)t2;
    }
}

// gx = gamma * invstd * (g' - dbeta / R - xhat * dgamma / R)
extern "C" __global__ void bn_input_grad(const T* g, const T* y, const T* x, const T* mean,
                                         const T* invstd, const T* gamma, const T* dgamma,
                                         const T* dbeta, T* gx, i64 R, int C, int relu) {
    const i64 n = R * C;
    const T inv_r = (T)(1.0 / (double)R);
    for (i64 k = (i64)blockIdx.x * blockDim.x + threadIdx.x; k < n;
         k += (i64)gridDim.x * blockDim.x) {
        const int c = (int)(k % C);
        const T is = invstd[c];
        const T s = gamma ? gamma[c] * is : is;
        const T xhat = (x[k] - mean[c]) * is;
        gx[k] = s * (xp_bn_g(g, y, k, relu) - dbeta[c] * inv_r - xhat * (dgamma[c] * inv_r));
    }
}
'''

FAMILY = Family('norm', SOURCE, [{'T': 'float'}, {'T': 'double'}])


def _row_blocks(R):
    nby = int(max(1, min(512, R // 512)))
    return nby, -(-R // nby)


def batch_norm_forward(xp, x2, gamma, beta, eps, relu, running=None):
    """``(y2, mean, var, invstd)`` of training-mode batch normalization of the C-contiguous
    (R, C) matrix ``x2``; ``gamma``/``beta`` (C,) or None; ``running`` None or
    ``(running_mean, running_var, momentum)`` (of ``x2``'s dtype) updated in place."""
    R, C = x2.shape
    dt = x2.dtype
    mean, var, invstd = (xp.empty(C, dtype=dt) for _ in range(3))
    y2 = xp.empty_like(x2)
    rm, rv, mom = running if running is not None else (None, None, 0.0)

    def stats():
        nby, per = _row_blocks(R)
        nbx = -(-C // 32)
        FAMILY.function(xp, 'bn_stats', T=ctype(dt))(
            (nbx, nby), (32, 8), (x2, np.int64(R), np.int32(C), np.int64(per),
                                  xp.empty((2 * nby, C), dtype=np.float64), counters(xp, nbx),
                                  mean, var, invstd, rm, rv, dt.type(mom), np.float64(eps)))

    def stats_standin():
        shift = x2[0].astype(np.float64)
        d = x2.astype(np.float64) - shift
        md = d.mean(axis=0)
        v = xp.maximum((d * d).mean(axis=0) - md * md, 0)
        mean[...] = (shift + md).astype(dt)
        var[...] = v.astype(dt)
        invstd[...] = (1.0 / xp.sqrt(v + eps)).astype(dt)
        if rm is not None:
            m = dt.type(mom)
            rm[...] = rm * m + (1 - m) * mean
            rv[...] = rv * m + (1 - m) * var

    def apply():
        FAMILY.function(xp, 'bn_apply', T=ctype(dt))(
            (blocks(x2.size),), (256,), (x2, y2, mean, invstd, gamma, beta, np.int64(R),
                                         np.int32(C), np.int32(relu)))

    def apply_standin():
        s = invstd if gamma is None else gamma * invstd
        v = (x2 - mean) * s
        if beta is not None:
            v += beta
        y2[...] = xp.maximum(v, 0) if relu else v
    run(xp, 'norm.bn_stats', stats, stats_standin)
    run(xp, 'norm.bn_apply', apply, apply_standin)
    return y2, mean, var, invstd


def batch_norm_backward(xp, g2, y2, x2, mean, invstd, gamma, relu, need_x):
    """``(gx2 or None, dgamma, dbeta)`` of :func:`batch_norm_forward` for the C-contiguous
    (R, C) output gradient ``g2`` (``y2`` is the output: the ReLU's mask)."""
    R, C = x2.shape
    dt = x2.dtype
    dgamma, dbeta = xp.empty(C, dtype=dt), xp.empty(C, dtype=dt)
    gx = xp.empty_like(x2) if need_x else None

    def sums():
        nby, per = _row_blocks(R)
        nbx = -(-C // 32)
        FAMILY.function(xp, 'bn_grad_stats', T=ctype(dt))(
            (nbx, nby), (32, 8), (g2, y2, x2, mean, invstd, np.int64(R), np.int32(C),
                                  np.int64(per), xp.empty((2 * nby, C), dtype=np.float64),
                                  counters(xp, nbx), dgamma, dbeta, np.int32(relu)))

    def masked():
        return g2 * (y2 > 0) if relu else g2

    def sums_standin():
        gm = masked()
        xhat = (x2 - mean) * invstd
        dbeta[...] = gm.sum(axis=0, dtype=np.float64).astype(dt)
        dgamma[...] = (gm * xhat).sum(axis=0, dtype=np.float64).astype(dt)

    def input_grad():
        FAMILY.function(xp, 'bn_input_grad', T=ctype(dt))(
            (blocks(x2.size),), (256,), (g2, y2, x2, mean, invstd, gamma, dgamma, dbeta,
                                         gx, np.int64(R), np.int32(C), np.int32(relu)))

    def input_standin():
        s = invstd if gamma is None else gamma * invstd
        xhat = (x2 - mean) * invstd
        inv_r = dt.type(1.0 / R)
        gx[...] = s * (masked() - dbeta * inv_r - xhat * (dgamma * inv_r))
    run(xp, 'norm.bn_grad_stats', sums, sums_standin)
    if gx is not None:
        run(xp, 'norm.bn_input_grad', input_grad, input_standin)
    return gx, dgamma, dbeta
