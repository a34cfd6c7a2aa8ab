"""Fused recurrent ops: a whole sequence of RNN / LSTM / LSTMP / GRU steps as one autograd node.

``rnn_sequence`` runs one layer in one direction over a ``(T, N, C)`` sequence. The
input-to-hidden products of all time steps are one matrix multiply; each step then does one
hidden-to-hidden product and a few in-place elementwise passes. The backward pass walks the
steps in reverse collecting the gate gradients of every step in one buffer, and computes the
weight and input gradients from it with three more matrix multiplies. A single cell step is
the same op with ``T = 1``.

Gate order and formulas are Gluon's (``i, f, g, o`` for LSTM, ``r, z, n`` for GRU with the
reset gate applied after the recurrent product); the cells' docstrings in
``xpnet.layers.rnn`` give the equations.

``sequence_mask``, ``sequence_last`` and ``sequence_reverse`` are MXNet's SequenceMask,
SequenceLast and SequenceReverse (time axis first), composed from differentiable ops.

Example::

    y, hT, cT = rnn_sequence(x, h0, c0, wi, wh, bi, bh, mode='lstm')   # x: (T, N, C)
"""
import contextlib

import numpy as np

from ..backend import to_device
from ..backend.blas import single_thread_blas, threaded_blas
from ..backend.hostpool import threaded_matmul
from ._base import _wrap, needs_grad, record_multi, record_op, same_ctx

__all__ = ['rnn_sequence', 'rnn_gates', 'lstm_pointwise', 'gru_pointwise', 'sequence_mask',
           'sequence_last', 'sequence_reverse']

_GATES = {'lstm': 4, 'gru': 3, 'rnn_tanh': 1, 'rnn_relu': 1}


def rnn_gates(mode):
    """Number of gates (row blocks of the weights) of ``mode``."""
    if mode not in _GATES:
        raise ValueError(f"unknown RNN mode {mode!r}; expected one of {sorted(_GATES)}")
    return _GATES[mode]


# Per-step products below this many multiply-adds run on one BLAS thread (see
# xpnet.backend.blas), and so do the whole-sequence products below _SMALL_SEQ.
_SMALL_STEP = 1 << 23
_SMALL_SEQ = 1 << 25


def _blas(xp, single):
    """How a block of host products uses the BLAS's threads: one thread (small products)
    or the BLAS's own threads (see ``xpnet/backend/blas.py``); nothing for devices."""
    if xp is not np:
        return contextlib.nullcontext()
    return single_thread_blas() if single else threaded_blas()


_VECTORS = {}


def _lstm_vectors(ctx, H, dtype):
    """Per-column constants for the four LSTM gates (cached per device, size and dtype):
    ``neg`` scales the pre-activations so that one ``1 / (1 + exp(neg * x))`` pass gives
    ``sigmoid(x)`` for i, f, o and ``sigmoid(2x)`` for g (then ``tanh(x) = 2 sigmoid(2x) -
    1``); ``u`` and ``w`` give the activation derivative ``act * (u - act) + w``."""
    key = (ctx, H, np.dtype(dtype).str)
    vecs = _VECTORS.get(key)
    if vecs is None:
        neg = np.full(4 * H, -1.0, dtype=dtype)
        neg[2 * H:3 * H] = -2.0
        u = np.ones(4 * H, dtype=dtype)
        u[2 * H:3 * H] = 0.0
        w = 1.0 - u
        if len(_VECTORS) > 64:
            _VECTORS.clear()
        vecs = _VECTORS[key] = tuple(to_device(v, ctx) for v in (neg, u, w))
    return vecs


def _sigmoid_(xp, a):
    """In-place sigmoid ``1 / (1 + exp(-a))`` (exp is vectorized in NumPy, tanh is not);
    overflow of exp gives the correct limit 0 (callers silence the warning)."""
    xp.negative(a, out=a)
    xp.exp(a, out=a)
    a += 1
    return xp.reciprocal(a, out=a)


def _lstm_gates_(xp, a, neg, g_block):
    """In place: LSTM pre-activations -> gate activations (sigmoid i, f, o; tanh g)."""
    a *= neg
    xp.exp(a, out=a)
    a += 1
    xp.reciprocal(a, out=a)
    g = a[g_block]
    g *= 2
    g -= 1


def _check_shapes(mode, xd, wi, wh, bi, bh, wr, h0, c0, vl):
    if xd.ndim != 3:
        raise ValueError(f'{mode}: expected a (T, N, C) input sequence, got shape {xd.shape}')
    T, N, C = xd.shape
    ng = rnn_gates(mode)
    G = wi.shape[0]
    if G % ng:
        raise ValueError(f'{mode}: i2h_weight has {G} rows, not a multiple of {ng} gates')
    H = G // ng
    P = H if wr is None else wr.shape[0]
    if wi.shape[1] != C:
        raise ValueError(f'{mode}: input has {C} features (shape {xd.shape}) but i2h_weight '
                         f'{wi.shape} expects {wi.shape[1]}')
    if wh.shape != (G, P):
        raise ValueError(f'{mode}: h2h_weight has shape {wh.shape}, expected {(G, P)}')
    if wr is not None and (mode != 'lstm' or wr.shape != (P, H)):
        raise ValueError(f'{mode}: h2r_weight of shape {wr.shape} needs mode lstm and shape '
                         f'(projection_size, {H})')
    for name, b in (('i2h_bias', bi), ('h2h_bias', bh)):
        if b is not None and b.shape != (G,):
            raise ValueError(f'{mode}: {name} has shape {b.shape}, expected {(G,)}')
    if h0.shape != (N, P):
        raise ValueError(f'{mode}: begin state h has shape {h0.shape}, expected {(N, P)}')
    if mode == 'lstm' and (c0 is None or c0.shape != (N, H)):
        raise ValueError(f'{mode}: begin cell state has shape '
                         f'{None if c0 is None else c0.shape}, expected {(N, H)}')
    if vl is not None and vl.shape != (N,):
        raise ValueError(f'{mode}: valid_length has shape {vl.shape}, expected {(N,)}')
    return T, N, C, G, H, P


def rnn_sequence(x, h0, c0, i2h_weight, h2h_weight, i2h_bias=None, h2h_bias=None,
                 h2r_weight=None, mode='lstm', valid_length=None, reverse=False,
                 state_clip=None, return_sequence=True):
    """Run one recurrent layer in one direction over a whole sequence (one autograd node).

    Args:
        x: input ``(T, N, C)`` (time-major).
        h0: begin state ``(N, P)`` (``P`` = projection size for LSTMP, else hidden size).
        c0: begin cell state ``(N, H)`` for 'lstm'; ignored (may be None) otherwise.
        i2h_weight, h2h_weight, i2h_bias, h2h_bias: Gluon's weights, ``(G*H, C)``,
            ``(G*H, P)``, ``(G*H,)``; biases may be None (zero).
        h2r_weight: ``(P, H)`` projection of LSTMP (no bias), or None.
        mode: 'lstm', 'gru', 'rnn_tanh' or 'rnn_relu'.
        valid_length: None or ``(N,)`` lengths: step ``t`` of sequence ``n`` runs only when
            ``t < valid_length[n]``; otherwise its output is zero and its state unchanged,
            so the final states are the last valid ones.
        reverse: process the steps from ``T-1`` down to 0 (the backward direction of a
            bidirectional layer; with ``valid_length`` this reverses each sequence within
            its valid length, as MXNet's SequenceReverse).
        state_clip: None or ``(min, max, clip_nan)`` clipping of the LSTM cell state.
        return_sequence: include the ``(T, N, P)`` outputs.

    Returns:
        list ``[y, h_T]`` (+ ``c_T`` for LSTM), without ``y`` if not ``return_sequence``.
    """
    rnn_gates(mode)
    for a in (h0, i2h_weight, h2h_weight):
        same_ctx(x, a, mode)
    s = _Sequence(x, h0, c0, i2h_weight, h2h_weight, i2h_bias, h2h_bias, h2r_weight, mode,
                  valid_length, reverse, state_clip, return_sequence)
    from ._fused import rnn as _device
    on_device = _device.applies(s)           # one GEMM and one gate kernel per step
    if on_device:
        _device.forward(s)
    else:
        step = _FORWARD_STEPS[mode]
        with _blas(s.xp, s.small), np.errstate(over='ignore'):
            for k, t in enumerate(s.order):
                step(s, k, t)
    outs = s.outputs()
    inputs = (x, h0, c0 if mode == 'lstm' else None, i2h_weight, h2h_weight, i2h_bias,
              h2h_bias, h2r_weight)
    need = needs_grad(*inputs)
    if need is None:
        return [_wrap(o, s.ctx) for o in outs]

    def backward(grads):
        if len(outs) == 1:          # the engine hands a single output's gradient unwrapped
            grads = [grads]
        run = _device.backward if on_device else _sequence_backward
        return run(s, grads, need, x.dtype, h0.dtype, c0.dtype if mode == 'lstm' else None)
    return record_multi(backward, inputs, outs, s.ctx, need=need, name=f'{mode}_sequence')


class _Sequence:
    """One sequence op's arrays: the data, the states of every step and what the backward
    steps of its mode need (the step functions below read and write them)."""

    def __init__(self, x, h0, c0, i2h_weight, h2h_weight, i2h_bias, h2h_bias, h2r_weight,
                 mode, valid_length, reverse, state_clip, return_sequence):
        xp = self.xp = x.xp
        self.ctx, self.mode = x._ctx, mode
        self.wi, self.wh = wi, wh = i2h_weight._data, h2h_weight._data
        dt = self.dt = wi.dtype
        xd = x._data.astype(dt, copy=False)
        bi = None if i2h_bias is None else i2h_bias._data
        self.bh = bh = None if h2h_bias is None else h2h_bias._data
        self.wr = wr = None if h2r_weight is None else h2r_weight._data
        h0d = h0._data.astype(dt, copy=False)
        c0d = c0._data.astype(dt, copy=False) if mode == 'lstm' else None
        vl = None
        if valid_length is not None:
            vl = valid_length._data if hasattr(valid_length, '_data') else \
                to_device(valid_length, self.ctx)
            vl = vl.reshape(-1) if vl.ndim == 2 and vl.shape[1] == 1 else vl
        T, N, C, G, H, P = _check_shapes(mode, xd, wi, wh, bi, bh, self.wr, h0d, c0d, vl)
        self.vl = vl
        if T == 0:
            raise ValueError(f'{mode}: the input sequence is empty (shape {xd.shape})')
        self.T, self.N, self.C, self.G, self.H, self.P = T, N, C, G, H, P
        self.order = range(T - 1, -1, -1) if reverse else range(T)
        self.reverse, self.state_clip, self.return_sequence = reverse, state_clip, \
            return_sequence
        self.x2 = xd.reshape(T * N, C)
        self.small_seq = xp is np and T * N * G * max(C, P) < _SMALL_SEQ
        self.small = xp is np and N * G * P < _SMALL_STEP
        with _blas(xp, self.small_seq):
            xw = threaded_matmul(self.x2, wi.T).reshape(T, N, G)   # i2h of every step
        if bi is not None:
            xw += bi
        if bh is not None and mode != 'gru':      # GRU's h2h bias is inside the reset gate
            xw += bh
        self.xw = xw                              # pre-activations -> activations in place
        self.whT = wh.T
        # S[k] is the state entering the k-th processed step (k = position, not time index).
        self.S = xp.empty((T + 1, N, P), dtype=dt)
        self.S[0] = h0d
        self.Cs = None
        self.mask = self.ys = self.cand = None
        if vl is not None:
            mask = xp.arange(T).reshape(T, 1) < vl.reshape(1, N)       # (T, N) bool
            self.mask = mask.reshape(T, N, 1)
            self.ys = xp.zeros((T, N, P), dtype=dt) if return_sequence else None
            self.cand = xp.empty((N, P), dtype=dt)
        self.tmp = xp.empty((N, G), dtype=dt)
        if mode == 'lstm':
            self.Cs = xp.empty((T + 1, N, H), dtype=dt)
            self.Cs[0] = c0d
            self.neg, self.du, self.dw = _lstm_vectors(self.ctx, H, dt)
            self.tcs = xp.empty((T, N, H), dtype=dt)
            self.hh = xp.empty((T, N, H), dtype=dt) if wr is not None else None
            self.clipped = xp.empty((T, N, H), dtype=bool) if state_clip is not None else None
            self.wrT = wr.T if wr is not None else None
        if mode == 'gru':
            self.hws = xp.empty((T, N, G), dtype=dt)
        if mode in ('lstm', 'gru'):
            self.tmpH = xp.empty((N, H), dtype=dt)

    def candidate(self, k):
        """Where step ``k`` writes its new state: the state itself, or a scratch row to be
        merged under the valid-length mask (:meth:`commit`)."""
        return self.S[k + 1] if self.mask is None else self.cand

    def commit(self, k, t, hn):
        """Under a valid-length mask: the new state is ``hn`` where step ``t`` runs, the old
        one elsewhere; the output is ``hn`` there and zero elsewhere."""
        xp, m = self.xp, self.mask[t]
        xp.copyto(self.S[k + 1], self.S[k])
        xp.copyto(self.S[k + 1], hn, where=m)
        if self.return_sequence:
            xp.copyto(self.ys[t], hn, where=m)

    def outputs(self):
        """``[y, h_T, (c_T)]`` as the op returns them."""
        outs = []
        T = self.T
        if self.return_sequence:
            if self.ys is not None:
                outs.append(self.ys)
            else:
                outs.append(self.S[:0:-1] if self.reverse else self.S[1:])
        outs.append(self.S[T].copy())
        if self.mode == 'lstm':
            outs.append(self.Cs[T].copy())
        return outs

    def states_in(self):
        """(T, N, P): the state entering the step at each time index."""
        return self.S[self.T - 1::-1] if self.reverse else self.S[:self.T]


# ---- forward steps: step k (position) at time index t, activations kept in s.xw[t] -----------

def _rnn_forward_step(s, k, t):
    xp, a = s.xp, s.xw[t]
    xp.matmul(s.S[k], s.whT, out=s.tmp)
    a += s.tmp
    if s.mode == 'rnn_relu':
        xp.maximum(a, 0, out=a)
    else:
        xp.tanh(a, out=a)
    if s.mask is None:
        s.S[k + 1] = a
    else:
        s.commit(k, t, a)


def _lstm_forward_step(s, k, t):
    xp, a, H = s.xp, s.xw[t], s.H
    xp.matmul(s.S[k], s.whT, out=s.tmp)
    a += s.tmp
    _lstm_gates_(xp, a, s.neg, (slice(None), slice(2 * H, 3 * H)))
    i, f, g, o = a[:, :H], a[:, H:2 * H], a[:, 2 * H:3 * H], a[:, 3 * H:]
    cn = s.Cs[k + 1]
    xp.multiply(f, s.Cs[k], out=cn)
    xp.multiply(i, g, out=s.tmpH)
    cn += s.tmpH
    if s.state_clip is not None:
        lo, hi, clip_nan = s.state_clip
        if clip_nan:
            xp.copyto(cn, lo, where=xp.isnan(cn))
        xp.less_equal(lo, cn, out=s.clipped[t])
        s.clipped[t] &= cn <= hi
        xp.clip(cn, lo, hi, out=cn)
    tc = s.tcs[t]
    xp.tanh(cn, out=tc)
    hn = s.candidate(k)
    if s.wr is None:
        xp.multiply(o, tc, out=hn)
    else:
        xp.multiply(o, tc, out=s.hh[t])
        xp.matmul(s.hh[t], s.wrT, out=hn)
    if s.mask is not None:
        s.commit(k, t, hn)
        xp.copyto(cn, s.Cs[k], where=~s.mask[t])


def _gru_forward_step(s, k, t):
    xp, a, H = s.xp, s.xw[t], s.H
    hw = s.hws[t]
    xp.matmul(s.S[k], s.whT, out=hw)
    if s.bh is not None:
        hw += s.bh
    rz = a[:, :2 * H]
    rz += hw[:, :2 * H]
    _sigmoid_(xp, rz)
    r, z, n = a[:, :H], a[:, H:2 * H], a[:, 2 * H:]
    xp.multiply(r, hw[:, 2 * H:], out=s.tmpH)
    n += s.tmpH
    xp.tanh(n, out=n)
    hn = s.candidate(k)
    xp.subtract(s.S[k], n, out=hn)            # h' = n + z * (h - n)
    hn *= z
    hn += n
    if s.mask is not None:
        s.commit(k, t, hn)


_FORWARD_STEPS = {'rnn_relu': _rnn_forward_step, 'rnn_tanh': _rnn_forward_step,
                  'lstm': _lstm_forward_step, 'gru': _gru_forward_step}


# ---- backward ----------------------------------------------------------------------------------

class _Grads:
    """The backward pass's buffers: the gate gradients of every step (``dGx`` for the input
    products; GRU's recurrent products get their own ``dGh``) and per-step scratch."""

    def __init__(self, s, dC):
        xp, T, N, G, H, P, dt = s.xp, s.T, s.N, s.G, s.H, s.P, s.dt
        self.dGx = xp.empty((T, N, G), dtype=dt)
        self.dGh = self.dGx if s.mode != 'gru' else xp.empty((T, N, G), dtype=dt)
        self.dR = xp.empty((T, N, P), dtype=dt) if s.wr is not None else None
        self.dC = dC
        if s.mode in ('lstm', 'gru'):
            self.dtmp = xp.empty((N, H), dtype=dt)
        if s.mode == 'lstm':
            self.dc = xp.empty((N, H), dtype=dt)
            self.deriv = xp.empty((N, G), dtype=dt)


def _sequence_backward(s, grads, need, x_dtype, h_dtype, c_dtype):
    """Walk the steps in reverse (each mode's backward step gives the gate gradients of its
    step and the gradient of the state entering it), then the parameter and input gradients
    as whole-sequence products."""
    xp, N, P, dt = s.xp, s.N, s.P, s.dt
    dy, dS, dC = _output_grads(s, grads)
    b = _Grads(s, dC)
    dh = xp.empty((N, P), dtype=dt)
    step = _BACKWARD_STEPS[s.mode]
    hin = s.states_in()
    with _blas(xp, s.small):
        for k in range(s.T - 1, -1, -1):
            t = s.order[k]
            # dh: gradient of the step's candidate output (masked), keep: passthrough part.
            if dy is not None:
                xp.add(dS, dy[t], out=dh)
            else:
                dh[...] = dS
            keep = None
            if s.mask is not None:
                dh *= s.mask[t]
                keep = ~s.mask[t]
            dprev = step(s, b, k, t, dh, keep, hin)
            if keep is not None:
                dS *= keep
                dprev += dS
            dS = dprev
    gh0 = dS.astype(h_dtype, copy=False) if need[1] else None
    gc0 = b.dC.astype(c_dtype, copy=False) if s.mode == 'lstm' and need[2] else None
    gx, gwi, gwh, gbi, gbh, gwr = _sequence_products(s, b, need, hin, x_dtype)
    return gx, gh0, gc0, gwi, gwh, gbi, gbh, gwr


def _output_grads(s, grads):
    """``(dy, dS, dC)``: the gradients of the outputs, of the last state (a fresh array,
    zeros without one) and, for LSTM, of the last cell state (likewise)."""
    xp, N, H, P, dt = s.xp, s.N, s.H, s.P, s.dt
    gi = 1 if s.return_sequence else 0
    dy = grads[0] if s.return_sequence else None
    dS = grads[gi]
    dS = xp.zeros((N, P), dtype=dt) if dS is None else dS.astype(dt, copy=True)
    dC = None
    if s.mode == 'lstm':
        dC = grads[gi + 1]
        dC = xp.zeros((N, H), dtype=dt) if dC is None else dC.astype(dt, copy=True)
    return dy, dS, dC


def _rnn_backward_step(s, b, k, t, dh, keep, hin):
    xp, a, dg = s.xp, s.xw[t], b.dGx[t]
    if s.mode == 'rnn_relu':
        xp.multiply(dh, a > 0, out=dg)
    else:
        xp.multiply(a, a, out=dg)
        xp.subtract(1, dg, out=dg)
        dg *= dh
    return dg @ s.wh


def _lstm_backward_step(s, b, k, t, dh, keep, hin):
    xp, a, H, dg, dc, dC = s.xp, s.xw[t], s.H, b.dGx[t], b.dc, b.dC
    i, f, g, o = a[:, :H], a[:, H:2 * H], a[:, 2 * H:3 * H], a[:, 3 * H:]
    if s.wr is not None:
        b.dR[t] = dh
        dhh = dh @ s.wr
    else:
        dhh = dh
    tc = s.tcs[t]
    # dc = dhh * o * (1 - tc^2) + dC (masked)
    xp.multiply(tc, tc, out=dc)
    xp.subtract(1, dc, out=dc)
    dc *= o
    dc *= dhh
    if keep is not None:
        xp.multiply(dC, s.mask[t], out=b.dtmp)
        dc += b.dtmp
    else:
        dc += dC
    if s.clipped is not None:
        dc *= s.clipped[t]
    xp.multiply(dc, g, out=dg[:, :H])
    xp.multiply(dc, s.Cs[k], out=dg[:, H:2 * H])
    xp.multiply(dc, i, out=dg[:, 2 * H:3 * H])
    xp.multiply(dhh, tc, out=dg[:, 3 * H:])
    xp.subtract(s.du, a, out=b.deriv)
    b.deriv *= a
    b.deriv += s.dw
    dg *= b.deriv
    if keep is not None:
        dC *= keep
        xp.multiply(dc, f, out=b.dtmp)
        dC += b.dtmp
    else:
        xp.multiply(dc, f, out=dC)
    return dg @ s.wh


def _gru_backward_step(s, b, k, t, dh, keep, hin):
    xp, a, H, dg, dtmp = s.xp, s.xw[t], s.H, b.dGx[t], b.dtmp
    r, z, n = a[:, :H], a[:, H:2 * H], a[:, 2 * H:]
    hw_n = s.hws[t][:, 2 * H:]
    dgh = b.dGh[t]
    dn = dg[:, 2 * H:]
    xp.multiply(n, n, out=dn)              # dn_pre = dh * (1 - z) * (1 - n^2)
    xp.subtract(1, dn, out=dn)
    xp.subtract(1, z, out=dtmp)
    dn *= dtmp
    dn *= dh
    xp.multiply(dn, r, out=dgh[:, 2 * H:])
    dr = dg[:, :H]                         # dr_pre = dn_pre * hw_n * r * (1 - r)
    xp.subtract(1, r, out=dr)
    dr *= r
    dr *= hw_n
    dr *= dn
    dzp = dg[:, H:2 * H]                   # dz_pre = dh * (h - n) * z * (1 - z)
    xp.subtract(hin[t], n, out=dzp)
    dzp *= dh
    xp.subtract(1, z, out=dtmp)
    dzp *= dtmp
    dzp *= z
    dgh[:, :2 * H] = dg[:, :2 * H]
    dprev = dgh @ s.wh
    xp.multiply(dh, z, out=dtmp)
    dprev += dtmp
    return dprev


_BACKWARD_STEPS = {'rnn_relu': _rnn_backward_step, 'rnn_tanh': _rnn_backward_step,
                   'lstm': _lstm_backward_step, 'gru': _gru_backward_step}


def _sequence_products(s, b, need, hin, x_dtype):
    """Input, weight and bias gradients from the gate gradients of all steps at once."""
    T, N, G, H, P = s.T, s.N, s.G, s.H, s.P
    gx = gwi = gwh = gbi = gbh = gwr = None
    with _blas(s.xp, s.small_seq):
        TN = T * N
        dGx2 = b.dGx.reshape(TN, G)
        if need[0]:
            gx = threaded_matmul(dGx2, s.wi).reshape(T, N, s.C).astype(x_dtype, copy=False)
        if need[3]:
            gwi = threaded_matmul(dGx2.T, s.x2)
        dGh2 = b.dGh.reshape(TN, G)
        if need[4]:
            gwh = dGh2.T @ hin.reshape(TN, P)
        if need[5]:
            gbi = dGx2.sum(axis=0)
        if need[6]:
            gbh = dGh2.sum(axis=0) if (s.mode == 'gru' or gbi is None) else gbi.copy()
        if need[7] and s.wr is not None:
            gwr = b.dR.reshape(TN, P).T @ s.hh.reshape(TN, H)
    return gx, gwi, gwh, gbi, gbh, gwr


# ---- gate arithmetic of one step, gates along any axis (convolutional cells) -----------------

def _blocks(ndim, axis, size, n):
    """Index tuples selecting the ``n`` gate blocks of ``size`` along ``axis``."""
    pre = (slice(None),) * axis
    return [pre + (slice(k * size, (k + 1) * size),) for k in range(n)]


def _gate_vector(xp, values, ndim, axis, size, dtype):
    v = np.repeat(np.asarray(values, dtype=dtype), size)
    shape = [1] * ndim
    shape[axis] = v.size
    v = v.reshape(shape)
    return v if xp is np else xp.asarray(v)


def _check_gates(op, what, i2h, h2h, state, gates, axis):
    """Validate a pointwise cell step's inputs: ``i2h``/``h2h`` of equal shape holding
    ``gates`` blocks along ``axis``, and ``state`` of one block's shape. Returns
    ``(xp, ndim, axis, H, state data)``."""
    same_ctx(i2h, h2h, op)
    nd = i2h.ndim
    axis = axis % nd
    if i2h.shape != h2h.shape or i2h.shape[axis] % gates:
        raise ValueError(f'{op}: gate arrays {i2h.shape} and {h2h.shape} must match and hold '
                         f'{gates} gates along axis {axis}')
    H = i2h.shape[axis] // gates
    sd = state._data
    expect = i2h.shape[:axis] + (H,) + i2h.shape[axis + 1:]
    if sd.shape != expect:
        raise ValueError(f'{op}: {what} has shape {sd.shape}, expected {expect}')
    return i2h.xp, nd, axis, H, sd


def lstm_pointwise(i2h, h2h, c_prev, axis=1):
    """One LSTM step after the gate products: ``pre = i2h + h2h`` holds the gates i, f, g, o
    in four blocks along ``axis``; returns ``[h, c]`` with ``c = f*c_prev + i*g`` and
    ``h = o*tanh(c)`` (sigmoid gates, tanh candidate). One autograd node."""
    xp, nd, axis, H, cd = _check_gates('lstm_pointwise', 'cell state', i2h, h2h, c_prev, 4,
                                       axis)
    dt = i2h.dtype
    a = xp.add(i2h._data, h2h._data)
    bi, bf, bg, bo = _blocks(nd, axis, H, 4)
    with np.errstate(over='ignore'):
        _lstm_gates_(xp, a, _gate_vector(xp, [-1.0, -1.0, -2.0, -1.0], nd, axis, H, dt), bg)
    c = a[bf] * cd
    c += a[bi] * a[bg]
    tc = xp.tanh(c)
    h = a[bo] * tc
    need = needs_grad(i2h, h2h, c_prev)
    if need is None:
        return [_wrap(h, i2h._ctx), _wrap(c, i2h._ctx)]

    def backward(grads):
        dh, dc_in = grads
        dc = 1 - tc * tc
        dc *= a[bo]
        if dh is None:
            dh = xp.zeros_like(h)
        dc *= dh
        if dc_in is not None:
            dc += dc_in
        d = xp.empty_like(a)
        xp.multiply(dc, a[bg], out=d[bi])
        xp.multiply(dc, cd, out=d[bf])
        xp.multiply(dc, a[bi], out=d[bg])
        xp.multiply(dh, tc, out=d[bo])
        deriv = _gate_vector(xp, [1.0, 1.0, 0.0, 1.0], nd, axis, H, dt) - a
        deriv *= a
        deriv += _gate_vector(xp, [0.0, 0.0, 1.0, 0.0], nd, axis, H, dt)
        d *= deriv
        gc = dc * a[bf] if need[2] else None
        return (d if need[0] else None), (d if need[1] else None), gc
    return record_multi(backward, (i2h, h2h, c_prev), [h, c], i2h._ctx, need=need,
                        name='lstm_pointwise')


def gru_pointwise(i2h, h2h, h_prev, axis=1):
    """One GRU step after the gate products (gates r, z, n in three blocks along ``axis``):
    ``n = tanh(i_n + r * h_n)``, ``h = (1 - z) * n + z * h_prev``. One autograd node."""
    xp, nd, axis, H, hp = _check_gates('gru_pointwise', 'state', i2h, h2h, h_prev, 3, axis)
    br, bz, bn = _blocks(nd, axis, H, 3)
    pre = (slice(None),) * axis
    brz = pre + (slice(0, 2 * H),)
    idat, hdat = i2h._data, h2h._data
    with np.errstate(over='ignore'):
        rz = _sigmoid_(xp, xp.add(idat[brz], hdat[brz]))
    r, z = rz[br], rz[bz]
    hn = hdat[bn]
    n = r * hn
    n += idat[bn]
    xp.tanh(n, out=n)
    h = hp - n
    h *= z
    h += n
    need = needs_grad(i2h, h2h, h_prev)
    if need is None:
        return _wrap(h, i2h._ctx)

    def backward(dh):
        dn = 1 - n * n
        dn *= 1 - z
        dn *= dh
        di = xp.empty_like(idat)
        dhh = xp.empty_like(idat)
        dr = di[br]
        xp.multiply(dn, hn, out=dr)
        dr *= r
        dr *= 1 - r
        dz = di[bz]
        xp.subtract(hp, n, out=dz)
        dz *= dh
        dz *= z
        dz *= 1 - z
        di[bn] = dn
        dhh[brz] = di[brz]
        xp.multiply(dn, r, out=dhh[bn])
        gh = dh * z if need[2] else None
        return (di if need[0] else None), (dhh if need[1] else None), gh
    return record_op(backward, (i2h, h2h, h_prev), h, i2h._ctx, need=need,
                     name='gru_pointwise')


# ---- sequence utilities (MXNet's SequenceMask / SequenceLast / SequenceReverse) -------------

def _lengths(valid_length, like):
    """``valid_length`` as an int64 device array on ``like``'s device."""
    vl = valid_length._data if hasattr(valid_length, '_data') else valid_length
    vl = to_device(vl, like._ctx)
    return vl.reshape(-1).astype(np.int64)


def _time_mask(valid_length, data, axis):
    """Float mask broadcastable to ``data``: 1 where the time index < valid length."""
    xp = data.xp
    T = data.shape[axis]
    vl = _lengths(valid_length, data)
    m = (xp.arange(T).reshape(T, 1) < vl.reshape(1, -1)).astype(data.dtype)   # (T, N)
    if axis != 0:
        m = m.T                                                                   # (N, T)
    return m.reshape(m.shape + (1,) * (data.ndim - 2))


def sequence_mask(data, valid_length, axis=0, value=0.0):
    """Set the steps at and after each sequence's length to ``value`` (time ``axis`` 0 or 1,
    batch the other one)."""
    from .math import add, multiply
    if axis not in (0, 1):
        raise ValueError(f'sequence_mask: time axis must be 0 or 1, got {axis}')
    m = _wrap(_time_mask(valid_length, data, axis), data._ctx)
    out = multiply(data, m)
    if value:
        out = add(out, _wrap((1 - m._data) * data.dtype.type(value), data._ctx))
    return out


def sequence_last(data, valid_length, axis=0):
    """The element at index ``valid_length - 1`` of each sequence (time ``axis`` 0 or 1)."""
    from .index import getitem
    xp = data.xp
    vl = _lengths(valid_length, data)
    N = data.shape[1 - axis]
    idx = xp.clip(vl - 1, 0, data.shape[axis] - 1)
    key = (idx, xp.arange(N)) if axis == 0 else (xp.arange(N), idx)
    return getitem(data, key)


def sequence_reverse(data, valid_length=None, axis=0):
    """Reverse each sequence along the time ``axis`` (0) within its valid length; the padded
    steps stay in place (MXNet's SequenceReverse)."""
    from .index import getitem
    from .shape import flip
    if axis != 0:
        raise ValueError('sequence_reverse: the time axis must be 0')
    if valid_length is None:
        return flip(data, 0)
    xp = data.xp
    T, N = data.shape[0], data.shape[1]
    vl = _lengths(valid_length, data).reshape(1, N)
    t = xp.arange(T).reshape(T, 1)
    src = xp.where(t < vl, vl - 1 - t, t)
    return getitem(data, (src, xp.arange(N).reshape(1, N)))
