"""The gate arithmetic of one recurrent step, forward and backward, each one kernel (the
hidden-to-hidden product around it is one GEMM), for LSTM, GRU and the plain RNN, with
``valid_length`` masking and LSTM cell clipping inside.

Gate layouts and formulas are Gluon's (see :mod:`xpnet.ops.rnn`). Forward kernels read
the step's input pre-activations ``a`` (N, G*H) (input products and biases of all steps
were computed at once) and the recurrent product ``hw`` (N, G*H), write the gate
*activations* back into ``a`` (the backward reads them) and the new state. A step with
``t >= valid_length[n]`` keeps the old state and outputs zeros.

Backward kernels get the state gradient in two parts, ``dS_in`` (the recurrent GEMM of
the later step) and ``carry`` (what passes unchanged through masked steps, plus GRU's
``dh * z``), and leave in ``carry`` the part for the step before, so every step is one
kernel and one GEMM.
"""
import numpy as np

from . import Family, blocks, ctype, run

__all__ = ['lstm_forward', 'lstm_backward', 'gru_forward', 'gru_backward', 'rnn_forward',
           'rnn_backward']

SOURCE = r'''
#define XP_VALID(n) (!vl || t < vl[n])

extern "C" __global__ void lstm_fwd(T* a, const T* hw, const T* c_prev, T* c_new, T* tc,
                                    const T* h_prev, T* h_new, T* y, bool* clipped,
                                    const int* vl, int t, int N, int H, T lo, T hi,
                                    int clip_mode) {
    const i64 total = (i64)N * H;
    for (i64 k = (i64)blockIdx.x * blockDim.x + threadIdx.x; k < total;
         k += (i64)gridDim.x * blockDim.x) {
        const int n = (int)(k / H), j = (int)(k % H);
        const i64 b = (i64)n * 4 * H + j;
        const T i = xp_sigmoid(a[b] + hw[b]);
        const T f = xp_sigmoid(a[b + H] + hw[b + H]);
        const T g = tanh(a[b + 2 * H] + hw[b + 2 * H]);
        const T o = xp_sigmoid(a[b + 3 * H] + hw[b + 3 * H]);
        a[b] = i; a[b + H] = f; a[b + 2 * H] = g; a[b + 3 * H] = o;
        const T cp = c_prev[k];
        T c = f * cp + i * g;
        if (clip_mode) {
            if (clip_mode == 2 && c != c) c = lo;
            clipped[k] = (lo <= c) && (c <= hi);
            c = (c < lo) ? lo : ((c > hi) ? hi : c);        // NaN stays NaN, as NumPy's clip
        }
        const T tcv = tanh(c);
        tc[k] = tcv;
        const T h = o * tcv;
        const bool valid = XP_VALID(n);
        c_new[k] = valid ? c : cp;
        h_new[k] = valid ? h : h_prev[k];
        if (y) y[k] = valid ? h : (T)0;
    }
}

extern "C" __global__ void lstm_bwd(const T* a, const T* c_prev, const T* tc,
                                    const bool* clipped, const int* vl, int t,
                                    const T* dy, const T* dS_in, T* carry, T* dC, T* dg,
                                    int N, int H) {
    const i64 total = (i64)N * H;
    for (i64 k = (i64)blockIdx.x * blockDim.x + threadIdx.x; k < total;
         k += (i64)gridDim.x * blockDim.x) {
        const int n = (int)(k / H), j = (int)(k % H);
        const i64 b = (i64)n * 4 * H + j;
        const bool valid = XP_VALID(n);
        const T dS = dS_in[k] + carry[k];
        const T dh = valid ? (dy ? dS + dy[k] : dS) : (T)0;
        const T i = a[b], f = a[b + H], g = a[b + 2 * H], o = a[b + 3 * H];
        const T tcv = tc[k];
        T dc = dh * o * ((T)1 - tcv * tcv);
        if (valid) dc += dC[k];
        if (clipped) dc *= (T)clipped[k];
        dg[b] = dc * g * (i * ((T)1 - i));
        dg[b + H] = dc * c_prev[k] * (f * ((T)1 - f));
        dg[b + 2 * H] = dc * i * ((T)1 - g * g);
        dg[b + 3 * H] = dh * tcv * (o * ((T)1 - o));
        dC[k] = valid ? dc * f : dC[k] + dc * f;
        carry[k] = valid ? (T)0 : dS;
    }
}

extern "C" __global__ void gru_fwd(T* a, T* hw, const T* bh, const T* h_prev, T* h_new,
                                   T* y, const int* vl, int t, int N, int H) {
    const i64 total = (i64)N * H;
    for (i64 k = (i64)blockIdx.x * blockDim.x + threadIdx.x; k < total;
         k += (i64)gridDim.x * blockDim.x) {
        const int n = (int)(k / H), j = (int)(k % H);
        const i64 b = (i64)n * 3 * H + j;
        T hr = hw[b], hz = hw[b + H], hn = hw[b + 2 * H];
        if (bh) {
            hr += bh[j]; hz += bh[H + j]; hn += bh[2 * H + j];
            hw[b] = hr; hw[b + H] = hz; hw[b + 2 * H] = hn;
        }
        const T r = xp_sigmoid(a[b] + hr);
        const T z = xp_sigmoid(a[b + H] + hz);
        const T nn = tanh(a[b + 2 * H] + r * hn);
        a[b] = r; a[b + H] = z; a[b + 2 * H] = nn;
        const T hp = h_prev[k];
        const T h = (hp - nn) * z + nn;
        const bool valid = XP_VALID(n);
        h_new[k] = valid ? h : hp;
        if (y) y[k] = valid ? h : (T)0;
    }
}

extern "C" __global__ void gru_bwd(const T* a, const T* hw, const T* h_prev, const int* vl,
                                   int t, const T* dy, const T* dS_in, T* carry, T* dgx,
                                   T* dgh, int N, int H) {
    const i64 total = (i64)N * H;
    for (i64 k = (i64)blockIdx.x * blockDim.x + threadIdx.x; k < total;
         k += (i64)gridDim.x * blockDim.x) {
        const int n = (int)(k / H), j = (int)(k % H);
        const i64 b = (i64)n * 3 * H + j;
        const bool valid = XP_VALID(n);
        const T dS = dS_in[k] + carry[k];
        const T dh = valid ? (dy ? dS + dy[k] : dS) : (T)0;
        const T r = a[b], z = a[b + H], nn = a[b + 2 * H];
        const T dn = ((T)1 - nn * nn) * ((T)1 - z) * dh;
        const T dr = ((T)1 - r) * r * hw[b + 2 * H] * dn;
        const T dz = (h_prev[k] - nn) * dh * ((T)1 - z) * z;
        dgx[b] = dr; dgx[b + H] = dz; dgx[b + 2 * H] = dn;
        dgh[b] = dr; dgh[b + H] = dz; dgh[b + 2 * H] = dn * r;
        carry[k] = (valid ? (T)0 : dS) + dh * z;
    }
}

extern "C" __global__ void rnn_fwd(T* a, const T* hw, const T* h_prev, T* h_new, T* y,
                                   const int* vl, int t, int N, int H, int relu) {
    const i64 total = (i64)N * H;
    for (i64 k = (i64)blockIdx.x * blockDim.x + threadIdx.x; k < total;
         k += (i64)gridDim.x * blockDim.x) {
        const int n = (int)(k / H);
        T v = a[k] + hw[k];
        v = relu ? (v < (T)0 ? (T)0 : v) : tanh(v);
        a[k] = v;
        const bool valid = XP_VALID(n);
        h_new[k] = valid ? v : h_prev[k];
        if (y) y[k] = valid ? v : (T)0;
    }
}

extern "C" __global__ void rnn_bwd(const T* a, const int* vl, int t, const T* dy,
                                   const T* dS_in, T* carry, T* dg, int N, int H, int relu) {
    const i64 total = (i64)N * H;
    for (i64 k = (i64)blockIdx.x * blockDim.x + threadIdx.x; k < total;
         k += (i64)gridDim.x * blockDim.x) {
        const int n = (int)(k / H);
        const bool valid = XP_VALID(n);
        const T dS = dS_in[k] + carry[k];
        const T dh = valid ? (dy ? dS + dy[k] : dS) : (T)0;
        const T v = a[k];
        dg[k] = relu ? dh * (T)(v > (T)0) : ((T)1 - v * v) * dh;
        carry[k] = valid ? (T)0 : dS;
    }
}
'''

FAMILY = Family('rnn', SOURCE, [{'T': 'float'}, {'T': 'double'}])


def _launch(xp, name, like, n, args):
    FAMILY.function(xp, name, T=ctype(like.dtype))((blocks(n),), (256,), args)


def _valid(xp, vl, t, N):
    """(N, 1) bool mask of the rows that run step ``t`` (all when ``vl`` is None)."""
    if vl is None:
        return None
    return (vl > t).reshape(N, 1)


def _where(xp, m, a, b):
    return a if m is None else xp.where(m, a, b)


def lstm_forward(xp, a, hw, c_prev, c_new, tc, h_prev, h_new, y, clipped, vl, t,
                 state_clip):
    """One LSTM step (see the module docstring); ``state_clip`` is None or
    ``(lo, hi, clip_nan)``; ``clipped`` the bool (N, H) mask of unclipped cells or None;
    ``vl`` an int32 (N,) device array or None."""
    N, H = c_prev.shape
    lo, hi, mode = (0.0, 0.0, 0) if state_clip is None else \
        (state_clip[0], state_clip[1], 2 if state_clip[2] else 1)
    T = a.dtype.type

    def cuda():
        _launch(xp, 'lstm_fwd', a, N * H, (a, hw, c_prev, c_new, tc, h_prev, h_new, y,
                                            clipped, vl, np.int32(t), np.int32(N),
                                            np.int32(H), T(lo), T(hi), np.int32(mode)))

    def standin():
        pre = a + hw
        i, f, g, o = (pre[:, k * H:(k + 1) * H] for k in range(4))
        i, f, o = (1 / (1 + xp.exp(-v)) for v in (i, f, o))
        g = xp.tanh(g)
        a[...] = xp.concatenate([i, f, g, o], axis=1)
        c = f * c_prev + i * g
        if mode:
            if mode == 2:
                c = xp.where(xp.isnan(c), T(lo), c)
            clipped[...] = (lo <= c) & (c <= hi)
            c = xp.clip(c, lo, hi)
        tcv = xp.tanh(c)
        tc[...] = tcv
        h = o * tcv
        m = _valid(xp, vl, t, N)
        c_new[...] = _where(xp, m, c, c_prev)
        h_new[...] = _where(xp, m, h, h_prev)
        if y is not None:
            y[...] = _where(xp, m, h, T(0))
    run(xp, 'rnn.lstm_fwd', cuda, standin)


def lstm_backward(xp, a, c_prev, tc, clipped, vl, t, dy, dS_in, carry, dC, dg):
    """The backward of one LSTM step: writes the gate gradients ``dg`` (N, 4H) and
    updates ``carry`` and the cell gradient ``dC`` in place."""
    N, H = c_prev.shape

    def cuda():
        _launch(xp, 'lstm_bwd', a, N * H, (a, c_prev, tc, clipped, vl, np.int32(t), dy,
                                            dS_in, carry, dC, dg, np.int32(N), np.int32(H)))

    def standin():
        m = _valid(xp, vl, t, N)
        dS = dS_in + carry
        dh = dS if dy is None else dS + dy
        dh = _where(xp, m, dh, 0).astype(dS.dtype)
        i, f, g, o = (a[:, k * H:(k + 1) * H] for k in range(4))
        dc = dh * o * (1 - tc * tc)
        dc = dc + _where(xp, m, dC, 0)
        if clipped is not None:
            dc = dc * clipped
        dg[...] = xp.concatenate([dc * g * (i * (1 - i)), dc * c_prev * (f * (1 - f)),
                                  dc * i * (1 - g * g), dh * tc * (o * (1 - o))], axis=1)
        dC[...] = _where(xp, m, dc * f, dC + dc * f)
        carry[...] = _where(xp, m, 0, dS)
    run(xp, 'rnn.lstm_bwd', cuda, standin)


def gru_forward(xp, a, hw, bh, h_prev, h_new, y, vl, t):
    """One GRU step; adds the recurrent bias ``bh`` (or None) into ``hw`` in place."""
    N, H = h_prev.shape
    T = a.dtype.type

    def cuda():
        _launch(xp, 'gru_fwd', a, N * H, (a, hw, bh, h_prev, h_new, y, vl, np.int32(t),
                                           np.int32(N), np.int32(H)))

    def standin():
        if bh is not None:
            hw[...] = hw + bh
        r = 1 / (1 + xp.exp(-(a[:, :H] + hw[:, :H])))
        z = 1 / (1 + xp.exp(-(a[:, H:2 * H] + hw[:, H:2 * H])))
        nn = xp.tanh(a[:, 2 * H:] + r * hw[:, 2 * H:])
        a[...] = xp.concatenate([r, z, nn], axis=1)
        h = (h_prev - nn) * z + nn
        m = _valid(xp, vl, t, N)
        h_new[...] = _where(xp, m, h, h_prev)
        if y is not None:
            y[...] = _where(xp, m, h, T(0))
    run(xp, 'rnn.gru_fwd', cuda, standin)


def gru_backward(xp, a, hw, h_prev, vl, t, dy, dS_in, carry, dgx, dgh):
    """The backward of one GRU step: gate gradients of the input products ``dgx`` and of
    the recurrent products ``dgh`` (N, 3H); ``carry`` updated in place."""
    N, H = h_prev.shape

    def cuda():
        _launch(xp, 'gru_bwd', a, N * H, (a, hw, h_prev, vl, np.int32(t), dy, dS_in, carry,
                                           dgx, dgh, np.int32(N), np.int32(H)))

    def standin():
        m = _valid(xp, vl, t, N)
        dS = dS_in + carry
        dh = dS if dy is None else dS + dy
        dh = _where(xp, m, dh, 0).astype(dS.dtype)
        r, z, nn = a[:, :H], a[:, H:2 * H], a[:, 2 * H:]
        dn = (1 - nn * nn) * (1 - z) * dh
        dr = (1 - r) * r * hw[:, 2 * H:] * dn
        dz = (h_prev - nn) * dh * (1 - z) * z
        dgx[...] = xp.concatenate([dr, dz, dn], axis=1)
        dgh[...] = xp.concatenate([dr, dz, dn * r], axis=1)
        carry[...] = _where(xp, m, 0, dS) + dh * z
    run(xp, 'rnn.gru_bwd', cuda, standin)


def rnn_forward(xp, a, hw, h_prev, h_new, y, vl, t, relu):
    """One plain RNN step (tanh or relu)."""
    N, H = h_prev.shape
    T = a.dtype.type

    def cuda():
        _launch(xp, 'rnn_fwd', a, N * H, (a, hw, h_prev, h_new, y, vl, np.int32(t),
                                           np.int32(N), np.int32(H), np.int32(relu)))

    def standin():
        v = a + hw
        v = xp.maximum(v, 0) if relu else xp.tanh(v)
        a[...] = v
        m = _valid(xp, vl, t, N)
        h_new[...] = _where(xp, m, v, h_prev)
        if y is not None:
            y[...] = _where(xp, m, v, T(0))
    run(xp, 'rnn.rnn_fwd', cuda, standin)


def rnn_backward(xp, a, vl, t, dy, dS_in, carry, dg, relu):
    """The backward of one plain RNN step."""
    N, H = a.shape

    def cuda():
        _launch(xp, 'rnn_bwd', a, N * H, (a, vl, np.int32(t), dy, dS_in, carry, dg,
                                           np.int32(N), np.int32(H), np.int32(relu)))

    def standin():
        m = _valid(xp, vl, t, N)
        dS = dS_in + carry
        dh = dS if dy is None else dS + dy
        dh = _where(xp, m, dh, 0).astype(dS.dtype)
        dg[...] = dh * (a > 0) if relu else (1 - a * a) * dh
        carry[...] = _where(xp, m, 0, dS)
    run(xp, 'rnn.rnn_bwd', cuda, standin)
