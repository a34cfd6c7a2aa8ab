"""Metric updates that accumulate on the device: each adds its batch's statistics into a
float64 accumulator ``acc`` = [sum, count, global sum, global count] and raises no flag
but the label check's, so a training step reads nothing back (the metric's ``get()``
does, once). Single-block kernels: fixed summation order, the same bits every run.
"""
import numpy as np

from . import Family, ctype, run
from .checks import LABEL_DTYPES

__all__ = ['accuracy', 'sum_values', 'pick_log_sum']

SOURCE = r'''
__device__ __forceinline__ bool xp_bad_label(double v, i64 classes) {
    return !(v >= 0.0) || v != floor(v) || (classes >= 0 && v >= (double)classes);
}

__device__ __forceinline__ void xp_accumulate(double* acc, double s, double n) {
    acc[0] += s; acc[1] += n; acc[2] += s; acc[3] += n;
}

// Accuracy of (rows, classes) scores: arg-max (first maximum; NaN wins) == label.
extern "C" __global__ void accuracy(const T* pred, const L* label, i64 rows, int classes,
                                    double* acc, int* bad) {
    __shared__ double shm[256];
    double hits = 0.0;
    bool wrong = false;
    for (i64 r = threadIdx.x; r < rows; r += blockDim.x) {
        const T* p = pred + r * classes;
        int a = 0;
        T best = p[0];
        for (int j = 1; j < classes; ++j) {
            const T v = p[j];
            if (v > best || (v != v && best == best)) { best = v; a = j; }
        }
        const double lv = (double)label[r];
        if (xp_bad_label(lv, classes)) wrong = true;
        else if ((double)a == lv) hits += 1.0;
    }
    hits = xp_block_sum(hits, shm);
    if (wrong) *bad = 1;
    if (threadIdx.x == 0) xp_accumulate(acc, hits, (double)rows);
}

// Loss: the sum and the number of the values.
extern "C" __global__ void sum_values(const T* x, i64 n, double* acc) {
    __shared__ double shm[256];
    double s = 0.0;
    for (i64 k = threadIdx.x; k < n; k += blockDim.x) s += (double)x[k];
    s = xp_block_sum(s, shm);
    if (threadIdx.x == 0) xp_accumulate(acc, s, (double)n);
}

// Cross-entropy / perplexity: sum of -log(max(p[label], floor) + eps) over rows whose
// label is not `ignore` (when use_ignore), and their number.
extern "C" __global__ void pick_log_sum(const T* pred, const L* label, i64 rows, int classes,
                                        double eps, double floor_, double ignore,
                                        int use_ignore, double* acc, int* bad) {
    __shared__ double shm[256];
    double s = 0.0, cnt = 0.0;
    bool wrong = false;
    for (i64 r = threadIdx.x; r < rows; r += blockDim.x) {
        const double lv = (double)label[r];
        if (use_ignore && lv == ignore) continue;
        if (xp_bad_label(lv, classes)) { wrong = true; continue; }
        double p = (double)pred[r * classes + (i64)lv];
        if (p < floor_) p = floor_;
        s -= log(p + eps);
        cnt += 1.0;
    }
    s = xp_block_sum(s, shm);
    cnt = xp_block_sum(cnt, shm);
    if (wrong) *bad = 1;
    if (threadIdx.x == 0) xp_accumulate(acc, s, cnt);
}
'''

FAMILY = Family('metrics', SOURCE, [{'T': t, 'L': ctype(d)} for t in ('float', 'double')
                                    for d in LABEL_DTYPES])


def _fn(xp, name, pred, label):
    return FAMILY.function(xp, name, T=ctype(pred.dtype), L=ctype(label.dtype))


def _add(xp, acc, s, n):
    """``acc[0], acc[2] += s`` and ``acc[1], acc[3] += n`` (device 0-d arrays or numbers)."""
    v = acc[0::2]
    v += s
    c = acc[1::2]
    c += n


def accuracy(xp, pred2, label, acc, bad):
    """Add the correct arg-max predictions of the C-contiguous (rows, classes) scores
    ``pred2`` for the (rows,) ``label`` into ``acc``; bad labels set ``bad``."""
    rows, classes = pred2.shape
    lab = label.reshape(-1)

    def cuda():
        _fn(xp, 'accuracy', pred2, lab)((1,), (256,), (pred2, xp.ascontiguousarray(lab),
                                                       np.int64(rows), np.int32(classes),
                                                       acc, bad))

    def standin():
        v = lab.astype(np.float64)
        wrong = ~(v >= 0) | (v != xp.floor(v)) | (v >= classes)
        hits = ((xp.argmax(pred2, axis=1) == v) & ~wrong).sum(dtype=np.float64)
        _add(xp, acc, hits, rows)
        xp.maximum(bad, wrong.any().astype(np.int32), out=bad)
    run(xp, 'metrics.accuracy', cuda, standin)


def sum_values(xp, x, acc):
    """Add the sum and the number of the values of ``x`` into ``acc``."""
    flat = x.reshape(-1)

    def cuda():
        FAMILY.function(xp, 'sum_values', T=ctype(flat.dtype), L='int')(
            (1,), (256,), (xp.ascontiguousarray(flat), np.int64(flat.size), acc))

    def standin():
        _add(xp, acc, flat.sum(dtype=np.float64), flat.size)
    run(xp, 'metrics.sum_values', cuda, standin)


def pick_log_sum(xp, pred2, label, acc, bad, eps, floor, ignore_label=None):
    """Add ``sum(-log(max(p[label], floor) + eps))`` over the rows of the C-contiguous
    (rows, classes) probabilities whose label is not ``ignore_label``, and their number,
    into ``acc``; bad labels set ``bad``."""
    rows, classes = pred2.shape
    lab = label.reshape(-1)

    def cuda():
        _fn(xp, 'pick_log_sum', pred2, lab)(
            (1,), (256,), (pred2, xp.ascontiguousarray(lab), np.int64(rows),
                            np.int32(classes), np.float64(eps), np.float64(floor),
                            np.float64(0 if ignore_label is None else ignore_label),
                            np.int32(ignore_label is not None), acc, bad))

    def standin():
        v = lab.astype(np.float64)
        keep = xp.ones(rows, dtype=bool) if ignore_label is None else (v != ignore_label)
        wrong = (~(v >= 0) | (v != xp.floor(v)) | (v >= classes)) & keep
        ok = keep & ~wrong
        idx = xp.where(ok, v, 0).astype(np.int64)
        p = pred2[xp.arange(rows), idx].astype(np.float64)
        terms = -xp.log(xp.maximum(p, floor) + eps)
        s = xp.where(ok, terms, 0).sum()
        _add(xp, acc, s, ok.sum(dtype=np.float64))
        xp.maximum(bad, wrong.any().astype(np.int32), out=bad)
    run(xp, 'metrics.pick_log_sum', cuda, standin)
