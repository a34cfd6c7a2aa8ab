"""Softmax cross-entropy with class-index labels, forward and backward in one kernel: per
row the loss ``log(sum(exp(x - max))) - (x[label] - max)`` and the gradient ``softmax(x) -
onehot(label)`` (the backward then scales it by the output gradient, one row scaling).
Labels are clipped to ``[0, classes)`` as MXNet's pick does (truncated toward zero first;
NaN becomes 0)."""
import numpy as np

from . import Family, ctype, run
from .checks import LABEL_DTYPES

__all__ = ['softmax_cross_entropy']

SOURCE = r'''
__device__ __forceinline__ i64 xp_label_index(L lab, int n) {
    const double d = (double)lab;
    if (!(d > 0.0)) return 0;                  // negative, -0.x and NaN
    if (d >= (double)(n - 1)) return n - 1;
    return (i64)d;                             // truncation toward zero, as astype(int64)
}

// One block per row (grid-stride over rows). grad may be NULL (no backward needed).
extern "C" __global__ void sce_forward(const T* x, const L* label, T* loss, T* grad, i64 M,
                                       int n, int from_logits) {
    __shared__ double shm[256];
    for (i64 row = blockIdx.x; row < M; row += gridDim.x) {
        const T* xr = x + row * n;
        const i64 idx = xp_label_index(label[row], n);
        if (from_logits) {
            if (threadIdx.x == 0) loss[row] = -xr[idx];
            if (grad)
                for (int j = threadIdx.x; j < n; j += blockDim.x)
                    grad[row * n + j] = (j == idx) ? (T)-1 : (T)0;
            continue;
        }
        double m = -XP_INF;
        for (int j = threadIdx.x; j < n; j += blockDim.x) {
            const double v = (double)xr[j];
            if (v > m || v != v) m = v;
        }
        m = xp_block_max(m, shm);
        const T mt = (T)m;
        double s = 0.0;
        for (int j = threadIdx.x; j < n; j += blockDim.x) s += (double)exp(xr[j] - mt);
        s = xp_block_sum(s, shm);
        if (threadIdx.x == 0) loss[row] = (T)(log(s) - (double)(xr[idx] - mt));
        if (grad) {
            const T inv = (T)(1.0 / s);
            for (int j = threadIdx.x; j < n; j += blockDim.x)
                grad[row * n + j] = exp(xr[j] - mt) * inv - (T)(j == idx);
        }
    }
}
'''

FAMILY = Family('softmax', SOURCE, [{'T': t, 'L': ctype(d)} for t in ('float', 'double')
                                    for d in LABEL_DTYPES])


def softmax_cross_entropy(xp, x2, labels, from_logits, want_grad):
    """``(loss (M,), grad (M, n) or None)`` of the sparse softmax cross-entropy of the
    C-contiguous (M, n) logits ``x2`` with (M,) labels of a
    :data:`~xpnet.backend.kernels.checks.LABEL_DTYPES` dtype."""
    M, n = x2.shape
    loss = xp.empty(M, dtype=x2.dtype)
    grad = xp.empty_like(x2) if want_grad else None
    lab = labels.reshape(-1)

    def cuda():
        FAMILY.function(xp, 'sce_forward', T=ctype(x2.dtype), L=ctype(lab.dtype))(
            (int(max(1, min(M, 8192))),), (256,), (x2, xp.ascontiguousarray(lab), loss, grad,
                                           np.int64(M), np.int32(n), np.int32(from_logits)))

    def standin():
        d = lab.astype(np.float64)
        idx = xp.where(d > 0, xp.minimum(d, n - 1), 0).astype(np.int64)
        rows = xp.arange(M)
        if from_logits:
            loss[...] = -x2[rows, idx]
            if grad is not None:
                grad[...] = 0
                grad[rows, idx] = -1
            return
        sh = x2 - x2.max(axis=1, keepdims=True)
        e = xp.exp(sh)
        s = e.sum(axis=1, dtype=np.float64)
        loss[...] = (xp.log(s) - sh[rows, idx]).astype(x2.dtype)
        if grad is not None:
            grad[...] = e * (1.0 / s).astype(x2.dtype)[:, None]
            grad[rows, idx] -= 1
    run(xp, 'softmax.sce_forward', cuda, standin)
    return loss, grad
