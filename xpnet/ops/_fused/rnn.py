"""Recurrent sequences on a device: per step one GEMM and one gate kernel forward, one
gate kernel and one GEMM backward (:mod:`xpnet.backend.kernels.rnn`); the whole-sequence
products around them are those of :mod:`xpnet.ops.rnn`. LSTM (without projection), GRU
and the plain RNN, with ``valid_length`` and cell clipping."""
import numpy as np

from ...backend.kernels import fused
from ...backend.kernels import rnn as _k

__all__ = ['applies', 'forward', 'backward']


def applies(s):
    """Whether the fused steps take this sequence (``s``: an ``ops.rnn._Sequence``)."""
    return fused(s.xp, s.dt) and s.wr is None


def _lengths(s):
    return None if s.vl is None else s.vl.astype(np.int32)


def forward(s):
    """Run every step of the sequence ``s`` (filling its states and activations)."""
    xp = s.xp
    vl = s.vl32 = _lengths(s)
    mode = s.mode
    for k, t in enumerate(s.order):
        y = None if s.ys is None else s.ys[t]
        if mode == 'lstm':
            xp.matmul(s.S[k], s.whT, out=s.tmp)
            _k.lstm_forward(xp, s.xw[t], s.tmp, s.Cs[k], s.Cs[k + 1], s.tcs[t], s.S[k],
                            s.S[k + 1], y, None if s.clipped is None else s.clipped[t], vl, t,
                            s.state_clip)
        elif mode == 'gru':
            xp.matmul(s.S[k], s.whT, out=s.hws[t])
            _k.gru_forward(xp, s.xw[t], s.hws[t], s.bh, s.S[k], s.S[k + 1], y, vl, t)
        else:
            xp.matmul(s.S[k], s.whT, out=s.tmp)
            _k.rnn_forward(xp, s.xw[t], s.tmp, s.S[k], s.S[k + 1], y, vl, t,
                           mode == 'rnn_relu')


def backward(s, grads, need, x_dtype, h_dtype, c_dtype):
    """The gradients of the sequence op (as ``ops.rnn._sequence_backward``)."""
    from ..rnn import _Grads, _output_grads, _sequence_products
    xp, N, P, dt = s.xp, s.N, s.P, s.dt
    dy, gemm, dC = _output_grads(s, grads)       # gemm: the state gradient entering a step
    if dy is not None:
        dy = xp.ascontiguousarray(dy.astype(dt, copy=False))
    gemm = xp.ascontiguousarray(gemm)              # the kernels index (N, H) C-order arrays
    b = _Grads(s, None if dC is None else xp.ascontiguousarray(dC))
    carry = xp.zeros((N, P), dtype=dt)
    vl = s.vl32
    for k in range(s.T - 1, -1, -1):
        t = s.order[k]
        dy_t = None if dy is None else dy[t]
        if s.mode == 'lstm':
            _k.lstm_backward(xp, s.xw[t], s.Cs[k], s.tcs[t],
                             None if s.clipped is None else s.clipped[t], vl, t, dy_t, gemm,
                             carry, b.dC, b.dGx[t])
            rec = b.dGx[t]
        elif s.mode == 'gru':
            _k.gru_backward(xp, s.xw[t], s.hws[t], s.S[k], vl, t, dy_t, gemm, carry,
                            b.dGx[t], b.dGh[t])
            rec = b.dGh[t]
        else:
            _k.rnn_backward(xp, s.xw[t], vl, t, dy_t, gemm, carry, b.dGx[t],
                            s.mode == 'rnn_relu')
            rec = b.dGx[t]
        if k or need[1]:
            xp.matmul(rec, s.wh, out=gemm)
    gh0 = (gemm + carry).astype(h_dtype, copy=False) if need[1] else None
    gc0 = b.dC.astype(c_dtype, copy=False) if s.mode == 'lstm' and need[2] else None
    gx, gwi, gwh, gbi, gbh, gwr = _sequence_products(s, b, need, s.states_in(), x_dtype)
    return gx, gh0, gc0, gwi, gwh, gbi, gbh, gwr
