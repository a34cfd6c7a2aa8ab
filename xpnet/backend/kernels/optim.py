"""Multi-tensor optimizer updates: all parameters of one dtype on one device in one launch
(apex's multi-tensor apply), and the global norm and rescaling of ``clip_global_norm`` in
two.

Every launch reads a small int64 *table* of the tensors (weight, gradient and state
pointers, sizes) and a float64 table of per-tensor constants (learning rates with their
multipliers, weight decays, Adam's bias correction), uploaded from pinned memory without
a synchronisation and only when their contents change (CuPy's ``asarray`` copies
asynchronously). The grid is (blocks per tensor, tensors): block row ``y`` walks tensor
``y`` with a grid-stride loop. An optional device ``skip`` flag (int32) makes the whole
update a no-op when it is non-zero -- how a non-finite loss skips the step without the
host reading anything (:mod:`xpnet.estimator`).

Decision (flat buffers vs pointer tables): pointer tables. Flat parameter and gradient
buffers would need every gradient written into its slice (the autograd engine hands fresh
gradient arrays to the parameters instead of copying them), one copy kernel per parameter;
a table costs one small asynchronous upload when a gradient array changes and nothing
else.

The arithmetic per element is exactly that of the NumPy kernels in
:mod:`xpnet.optimizer` (same operations in the same order, constants rounded once to the
weight's dtype), which the stand-ins call.
"""
import numpy as np

from . import Family, counters, ctype, run

__all__ = ['TensorTable', 'sgd_update', 'nag_update', 'adam_update', 'adamw_update',
           'global_norm', 'scale_by_norm']

SOURCE = r'''
#define XP_TENSOR(k) ((T*)table[5 * ti + (k)])
#define XP_LOOP for (i64 k = (i64)blockIdx.x * blockDim.x + threadIdx.x; k < size; \
                     k += (i64)gridDim.x * blockDim.x)
// This block row's tensor (blockIdx.y): weight w, gradient g, states s1, s2, its size and
// its row h of the per-tensor constants; nothing to do while the skip flag is set.
#define XP_UPDATE_PROLOGUE \
    if (skip && *skip) return; \
    const int ti = blockIdx.y; \
    T* w = XP_TENSOR(0); \
    const T* g = XP_TENSOR(1); \
    T* s1 = XP_TENSOR(2); \
    T* s2 = XP_TENSOR(3); \
    const i64 size = table[5 * ti + 4]; \
    const double* h = hyper + 6 * ti;

__device__ __forceinline__ T xp_clip(T t, T c) { return t < -c ? -c : (t > c ? c : t); }

// hyper per tensor: lr * rescale, rescale, lr, lr * wd, 1 - lr * wd, wd != 0
extern "C" __global__ void sgd_mt(const i64* table, const double* hyper, T momentum, T clip,
                                  int use_clip, const int* skip) {
    XP_UPDATE_PROLOGUE
    T* m = s1;
    const T lrs = (T)h[0], rescale = (T)h[1], lr = (T)h[2], lrwd = (T)h[3], decay = (T)h[4];
    const bool wd = h[5] != 0.0;
    XP_LOOP {
        T t;
        if (use_clip) t = xp_clip(g[k] * rescale, clip) * lr;
        else t = g[k] * lrs;
        if (m) {
            T mv = m[k] * momentum - t;
            if (wd) mv -= w[k] * lrwd;
            m[k] = mv;
            w[k] += mv;
        } else {
            T wv = w[k];
            if (wd) wv *= decay;
            w[k] = wv - t;
        }
    }
}

// hyper per tensor: rescale, wd, lr
extern "C" __global__ void nag_mt(const i64* table, const double* hyper, T momentum, T clip,
                                  int use_clip, const int* skip) {
    XP_UPDATE_PROLOGUE
    T* m = s1;
    const T rescale = (T)h[0], wdv = (T)h[1], lr = (T)h[2];
    XP_LOOP {
        T t = g[k] * rescale;
        if (use_clip) t = xp_clip(t, clip);
        if (h[1] != 0.0) t += w[k] * wdv;
        t *= lr;
        if (m) {
            const T mv = m[k] * momentum - t;
            m[k] = mv;
            w[k] = (w[k] - t) + mv * momentum;
        } else {
            w[k] -= t;
        }
    }
}

// hyper per tensor: rescale, wd, lr_t (Adam) | rescale, lr_t, 1 - decay, decay != 0 (AdamW)
extern "C" __global__ void adam_mt(const i64* table, const double* hyper, T beta1, T one_b1,
                                   T beta2, T one_b2, T eps, T clip, int use_clip,
                                   int decoupled, const int* skip) {
    XP_UPDATE_PROLOGUE
    T* mean = s1;
    T* var = s2;
    XP_LOOP {
        T t = g[k] * (T)h[0];
        if (!decoupled && h[1] != 0.0) t += w[k] * (T)h[1];
        if (use_clip) t = xp_clip(t, clip);
        const T mv = mean[k] * beta1 + t * one_b1;
        const T vv = var[k] * beta2 + (t * t) * one_b2;
        mean[k] = mv;
        var[k] = vv;
        T u = mv / (sqrt(vv) + eps);
        if (decoupled) {
            u *= (T)h[1];
            T wv = w[k];
            if (h[3] != 0.0) wv *= (T)h[2];
            w[k] = wv - u;
        } else {
            w[k] -= u * (T)h[2];
        }
    }
}

// The 2-norm of all tensors of the table (float64 sums, combined in block order).
extern "C" __global__ void sumsq_mt(const i64* table, double* partial, unsigned int* counter,
                                    T* norm) {
    __shared__ double shm[256];
    const int ti = blockIdx.y;
    const T* x = XP_TENSOR(0);
    const i64 size = table[5 * ti + 4];
    double acc = 0.0;
    XP_LOOP { const double v = (double)x[k]; acc += v * v; }
    acc = xp_block_sum(acc, shm);
    const unsigned int nb = gridDim.x * gridDim.y;
    if (threadIdx.x == 0) partial[(i64)ti * gridDim.x + blockIdx.x] = acc;
    if (xp_last_block(counter, nb) && threadIdx.x == 0) {
        double s = 0.0;
        for (unsigned int b = 0; b < nb; ++b) s += __ldcg(partial + b);
        norm[0] = (T)sqrt(s);
    }
}

// x *= max_norm / (norm + 1e-8) when that is below 1, for every tensor of the table.
extern "C" __global__ void scale_mt(const i64* table, const T* norm, double max_norm) {
    const int ti = blockIdx.y;
    const double scale = max_norm / ((double)norm[0] + 1e-8);
    if (!(scale < 1.0)) return;
    T* x = XP_TENSOR(0);
    const i64 size = table[5 * ti + 4];
    const T s = (T)scale;
    XP_LOOP x[k] *= s;
}
'''

FAMILY = Family('optim', SOURCE, [{'T': 'float'}, {'T': 'double'}])


class TensorTable:
    """The device tables of a group of tensors: pointers and sizes (int64, (n, 5):
    weight, gradient, state 1, state 2, size) and per-tensor constants (float64, (n, 6)),
    re-uploaded only when their contents change."""

    def __init__(self):
        self._host = {}
        self._dev = {}

    def get(self, xp, name, host):
        """The device copy of the host array ``host`` under ``name`` (cached by value)."""
        old = self._host.get(name)
        if old is not None and old.shape == host.shape and (old == host).all():
            return self._dev[name]
        self._host[name] = host.copy()
        dev = self._dev[name] = xp.asarray(host)
        return dev


def _pointers(arrays):
    return [0 if a is None else int(a.data.ptr) for a in arrays]


def _table(xp, cache, ws, gs, s1, s2, hyper):
    """Upload (if changed) the pointer table and the constants; returns both."""
    n = len(ws)
    host = np.zeros((n, 5), dtype=np.int64)
    host[:, 0] = _pointers(ws)
    host[:, 1] = _pointers(gs)
    host[:, 2] = _pointers(s1)
    host[:, 3] = _pointers(s2)
    host[:, 4] = [w.size for w in ws]
    hyp = np.zeros((n, 6), dtype=np.float64)
    hyp[:, :len(hyper[0])] = hyper
    return cache.get(xp, 'table', host), cache.get(xp, 'hyper', hyp)


def _grid(ws):
    biggest = max(w.size for w in ws)
    return (int(max(1, min(160, -(-biggest // 1024)))), len(ws))


def _launch(xp, cache, name, ws, gs, s1, s2, hyper, scalars, standin):
    dt = ws[0].dtype

    def cuda():
        table, hyp = _table(xp, cache, ws, gs, s1, s2, hyper)
        FAMILY.function(xp, name, T=ctype(dt))(_grid(ws), (256,), (table, hyp) + scalars)
    run(xp, f'optim.{name}', cuda, standin)


def _nones(n):
    return [None] * n


def sgd_update(xp, cache, ws, gs, moms, lrs, wds, rescale, clip, momentum, skip, standin):
    """SGD (with momentum when ``moms`` has arrays) on every tensor at once; ``lrs``/
    ``wds`` per tensor; ``standin()`` runs the NumPy kernel per tensor (simulated device)."""
    dt = ws[0].dtype.type
    hyper = [(lr * rescale, rescale, lr, lr * wd, 1.0 - lr * wd, float(wd != 0))
             for lr, wd in zip(lrs, wds)]
    _launch(xp, cache, 'sgd_mt', ws, gs, moms, _nones(len(ws)), hyper,
            (dt(momentum), dt(clip or 0), np.int32(clip is not None), skip), standin)


def nag_update(xp, cache, ws, gs, moms, lrs, wds, rescale, clip, momentum, skip, standin):
    """Nesterov momentum on every tensor at once (see :func:`sgd_update`)."""
    dt = ws[0].dtype.type
    hyper = [(rescale, wd, lr) for lr, wd in zip(lrs, wds)]
    _launch(xp, cache, 'nag_mt', ws, gs, moms, _nones(len(ws)), hyper,
            (dt(momentum), dt(clip or 0), np.int32(clip is not None), skip), standin)


def adam_update(xp, cache, ws, gs, means, variances, lr_ts, wds, rescale, clip, beta1,
                beta2, epsilon, skip, standin):
    """Adam (``lr_ts`` bias-corrected per tensor) on every tensor at once."""
    dt = ws[0].dtype.type
    hyper = [(rescale, wd, lr_t) for lr_t, wd in zip(lr_ts, wds)]
    _launch(xp, cache, 'adam_mt', ws, gs, means, variances, hyper,
            (dt(beta1), dt(1.0 - beta1), dt(beta2), dt(1.0 - beta2), dt(epsilon),
             dt(clip or 0), np.int32(clip is not None), np.int32(0), skip), standin)


def adamw_update(xp, cache, ws, gs, means, variances, lr_ts, decays, rescale, clip, beta1,
                 beta2, epsilon, skip, standin):
    """AdamW (decoupled decay ``decays`` = lr * wd per tensor) on every tensor at once."""
    dt = ws[0].dtype.type
    hyper = [(rescale, lr_t, 1.0 - d, float(d != 0)) for lr_t, d in zip(lr_ts, decays)]
    _launch(xp, cache, 'adam_mt', ws, gs, means, variances, hyper,
            (dt(beta1), dt(1.0 - beta1), dt(beta2), dt(1.0 - beta2), dt(epsilon),
             dt(clip or 0), np.int32(clip is not None), np.int32(1), skip), standin)


def global_norm(xp, cache, arrays):
    """The 2-norm of all ``arrays`` (one device, one float dtype) as a (1,) device array,
    float64 sums added in a fixed order."""
    dt = arrays[0].dtype
    norm = xp.empty(1, dtype=dt)

    def cuda():
        table, _ = _table(xp, cache, arrays, _nones(len(arrays)), _nones(len(arrays)),
                          _nones(len(arrays)), [(0.0,)] * len(arrays))
        grid = _grid(arrays)
        partial = xp.empty(grid[0] * grid[1], dtype=np.float64)
        FAMILY.function(xp, 'sumsq_mt', T=ctype(dt))(
            grid, (256,), (table, partial, counters(xp, 1), norm))

    def standin():
        total = sum(xp.dot(a.reshape(-1).astype(np.float64), a.reshape(-1).astype(np.float64))
                    for a in arrays)
        norm[...] = xp.sqrt(total).astype(dt)
    run(xp, 'optim.sumsq_mt', cuda, standin)
    return norm


def scale_by_norm(xp, cache, arrays, norm, max_norm):
    """Every array ``*= max_norm / (norm + 1e-8)`` where that is below 1, in place."""
    dt = arrays[0].dtype

    def cuda():
        table, _ = _table(xp, cache, arrays, _nones(len(arrays)), _nones(len(arrays)),
                          _nones(len(arrays)), [(0.0,)] * len(arrays))
        FAMILY.function(xp, 'scale_mt', T=ctype(dt))(
            _grid(arrays), (256,), (table, norm, np.float64(max_norm)))

    def standin():
        scale = max_norm / (norm.astype(np.float64) + 1e-8)
        s = xp.where(scale < 1.0, scale, 1.0).astype(dt)
        for a in arrays:
            a *= s
    run(xp, 'optim.scale_mt', cuda, standin)
