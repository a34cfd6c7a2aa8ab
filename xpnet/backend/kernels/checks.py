"""Checks of device data that only write a flag on the device (no synchronisation): label
ranges and non-finite values. The flags are read back later, with other data
(:mod:`xpnet.backend.checks`)."""
import numpy as np

from . import Family, blocks, ctype, run

__all__ = ['LABEL_DTYPES', 'mark_bad_labels', 'mark_nonfinite']

LABEL_DTYPES = tuple(np.dtype(d) for d in (np.float32, np.float64, np.int32, np.int64,
                                           np.uint8, np.int8))

LABEL_SOURCE = r'''
// flag[0] = 1 if a label is not a whole number in [0, classes) (classes < 0: >= 0 only),
// skipping labels equal to `ignore` when use_ignore is set.
extern "C" __global__ void check_labels(const L* lab, i64 n, i64 classes, int* flag,
                                        double ignore, int use_ignore) {
    bool bad = false;
    for (i64 k = (i64)blockIdx.x * blockDim.x + threadIdx.x; k < n;
         k += (i64)gridDim.x * blockDim.x) {
        const double v = (double)lab[k];
        if (use_ignore && v == ignore) continue;
        if (!(v >= 0.0) || v != floor(v) || (classes >= 0 && v >= (double)classes))
            bad = true;
    }
    if (bad) flag[0] = 1;
}
'''

FINITE_SOURCE = r'''
// flag[0] = value if flag[0] is 0 and x holds NaN or inf (the first value set stays).
extern "C" __global__ void mark_nonfinite(const T* x, i64 n, int* flag, int value) {
    bool bad = false;
    for (i64 k = (i64)blockIdx.x * blockDim.x + threadIdx.x; k < n;
         k += (i64)gridDim.x * blockDim.x)
        if (!isfinite(x[k])) bad = true;
    if (bad) atomicCAS(flag, 0, value);
}
'''

LABELS = Family('labels', LABEL_SOURCE, [{'L': ctype(d)} for d in LABEL_DTYPES])
FINITE = Family('finite', FINITE_SOURCE, [{'T': 'float'}, {'T': 'double'}])


def mark_bad_labels(xp, labels, classes, flag, ignore_label=None):
    """Set the device int32 ``flag`` (0-d) to 1 if a label is not a whole class index in
    ``[0, classes)`` (``classes`` None: ``>= 0``); positions equal to ``ignore_label``
    are skipped. ``labels`` is a device array of a :data:`LABEL_DTYPES` dtype."""
    lab = labels.reshape(-1)
    n = lab.size
    if not n:
        return
    ncls = -1 if classes is None else int(classes)

    def cuda():
        LABELS.function(xp, 'check_labels', L=ctype(lab.dtype))(
            (blocks(n),), (256,), (xp.ascontiguousarray(lab), np.int64(n), np.int64(ncls),
                                   flag, np.float64(0 if ignore_label is None
                                                    else ignore_label),
                                   np.int32(ignore_label is not None)))

    def standin():
        v = lab.astype(np.float64)
        bad = ~(v >= 0) | (v != xp.floor(v))
        if ncls >= 0:
            bad |= v >= ncls
        if ignore_label is not None:
            bad &= v != ignore_label
        xp.maximum(flag, bad.any().astype(np.int32), out=flag)
    run(xp, 'labels.check_labels', cuda, standin)


def mark_nonfinite(xp, x, flag, value):
    """Set the device int32 ``flag`` (0-d) to ``value`` if it is 0 and the float array
    ``x`` holds NaN or inf (sticky: the first value stays). Half precision takes the
    stand-in's array calls (a few kernels, still no synchronisation)."""
    flat = x.reshape(-1)
    n = flat.size
    if not n:
        return

    def cuda():
        FINITE.function(xp, 'mark_nonfinite', T=ctype(flat.dtype))(
            (blocks(n),), (256,), (xp.ascontiguousarray(flat), np.int64(n), flag,
                                   np.int32(value)))

    def standin():
        bad = (~xp.isfinite(flat)).any()
        flag[...] = xp.where((flag == 0) & bad, np.int32(value), flag)
    if flat.dtype.kind != 'f' or flat.dtype.itemsize < 4:
        standin()
        return
    run(xp, 'finite.mark_nonfinite', cuda, standin)
