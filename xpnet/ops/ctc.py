"""Connectionist temporal classification (Graves et al. 2006): the loss and its gradient.

The forward-backward recursions run in log space, vectorized over the batch and over the
extended label sequence (labels interleaved with blanks), one step per time frame; the
gradient with respect to the unnormalized predictions is ``softmax(pred) - occupancy``,
where the occupancy of class ``k`` at time ``t`` sums ``alpha * beta / p`` over the
positions holding ``k``.
"""
import numpy as np

from ..backend import scatter_add, to_device
from ..ndarray import NDArray
from ._base import _wrap, record_op, tracked

__all__ = ['ctc_loss']


def _int_array(value, like, n, what):
    """Per-sample lengths as an int64 device array of shape (n,)."""
    d = value._data if isinstance(value, NDArray) else to_device(value, like._ctx)
    d = d.reshape(-1).astype(np.int64)
    if d.shape[0] != n:
        raise ValueError(f'ctc_loss: {what} must hold one length per sample ({n}), got shape '
                         f'{tuple(d.shape)}')
    return d


def _extended_labels(xp, labels, lengths, blank):
    """(N, S) labels interleaved with blanks, S = 2 * L + 1, and (N, S) masks: position
    valid, and 'may skip from s - 2' (a label differing from the one two places back)."""
    n, L = labels.shape
    S = 2 * L + 1
    ext = xp.full((n, S), blank, dtype=np.int64)
    ext[:, 1::2] = labels
    pos = xp.arange(S)
    valid = pos[None, :] < (2 * lengths + 1)[:, None]
    ext = xp.where(valid, ext, blank)
    skip = xp.zeros((n, S), dtype=bool)
    if S > 2:
        skip[:, 2:] = (ext[:, 2:] != blank) & (ext[:, 2:] != ext[:, :-2])
    return ext, valid, skip


def _lse3(xp, a, b, c):
    """log(exp(a) + exp(b) + exp(c)) elementwise, -inf safe."""
    m = xp.maximum(xp.maximum(a, b), c)
    finite = xp.isfinite(m)
    m0 = xp.where(finite, m, 0)
    s = xp.exp(a - m0) + xp.exp(b - m0) + xp.exp(c - m0)
    with np.errstate(divide='ignore'):
        return xp.where(finite, xp.log(s) + m0, -np.inf)


def _shift(xp, a, k, neg):
    """``a`` shifted right by ``k`` along the last axis, filled with -inf."""
    out = xp.full(a.shape, neg, dtype=a.dtype)
    out[..., k:] = a[..., :a.shape[-1] - k]
    return out


def _forward_backward(xp, lp, ext, valid, skip, t_len, lengths):
    """alpha and beta (T, N, S), each including the emission at its own frame, and
    log p(label) (N,)."""
    T, n, _ = lp.shape
    S = ext.shape[1]
    neg = -np.inf
    emit = xp.take_along_axis(lp, xp.broadcast_to(ext[None], (T, n, S)), axis=2)
    emit = xp.where(valid[None], emit, neg)
    no_skip = xp.where(skip, 0.0, neg).astype(lp.dtype)
    alpha = xp.full((T, n, S), neg, dtype=lp.dtype)
    start = xp.full((n, S), neg, dtype=lp.dtype)
    start[:, 0] = emit[0, :, 0]
    if S > 1:
        start[:, 1] = xp.where(lengths > 0, emit[0, :, 1], neg)
    alpha[0] = start
    for t in range(1, T):
        a = alpha[t - 1]
        step = _lse3(xp, a, _shift(xp, a, 1, neg), _shift(xp, a, 2, neg) + no_skip) + emit[t]
        alpha[t] = xp.where((t < t_len)[:, None], step, a)
    rows = xp.arange(n)
    last = alpha[xp.maximum(t_len - 1, 0), rows]            # (N, S) at each end frame
    end = 2 * lengths
    tail = xp.where(lengths > 0, last[rows, xp.maximum(end - 1, 0)], neg)
    logp = xp.logaddexp(last[rows, end], tail)
    # beta: started at each sequence's last frame from its two final positions
    skip_next = xp.zeros((n, S), dtype=lp.dtype) + neg
    if S > 2:
        skip_next[:, :-2] = xp.where(skip[:, 2:], 0.0, neg)
    pos = xp.arange(S)[None, :]
    final = (pos == end[:, None]) | ((pos == end[:, None] - 1) & (lengths[:, None] > 0))
    beta = xp.full((T, n, S), neg, dtype=lp.dtype)
    nxt = xp.full((n, S), neg, dtype=lp.dtype)
    for t in range(T - 1, -1, -1):
        b1 = xp.full((n, S), neg, dtype=lp.dtype)
        b1[:, :-1] = nxt[:, 1:]
        b2 = xp.full((n, S), neg, dtype=lp.dtype)
        b2[:, :-2] = nxt[:, 2:]
        step = _lse3(xp, nxt, b1, b2 + skip_next) + emit[t]
        init = xp.where(final, emit[t], neg)
        cur = xp.where((t == t_len - 1)[:, None], init,
                       xp.where((t < t_len - 1)[:, None], step, neg))
        beta[t] = cur
        nxt = cur
    return alpha, beta, emit, logp


def ctc_loss(pred, labels, pred_lengths=None, label_lengths=None, blank=-1, padding=-1):
    """Per-sample CTC loss ``-log p(label | pred)`` of (T, N, C) unnormalized predictions.

    Args:
        pred: NDArray (T, N, C), logits over C classes (softmax taken inside).
        labels: (N, L) class indices, padded with ``padding`` after each sequence.
        pred_lengths: (N,) frames used per sample (None: all T).
        label_lengths: (N,) labels per sample (None: up to the first ``padding``).
        blank: index of the blank class (-1: the last, ``C - 1``).
        padding: the padding value of ``labels``.

    Returns:
        NDArray (N,); differentiable with respect to ``pred``. A label sequence that no
        alignment can produce (too long for its frames) gives ``inf`` and a zero gradient.
    """
    xp = pred.xp
    T, n, C = pred.shape
    blank = blank % C
    lab = labels._data if isinstance(labels, NDArray) else to_device(labels, pred._ctx)
    lab = lab.astype(np.int64).reshape(n, -1)
    if label_lengths is None:
        pad = lab == padding
        first = xp.where(pad.any(axis=1), xp.argmax(pad, axis=1), lab.shape[1])
        lengths = first.astype(np.int64)
    else:
        lengths = xp.minimum(_int_array(label_lengths, pred, n, 'label_lengths'), lab.shape[1])
    t_len = xp.full((n,), T, dtype=np.int64) if pred_lengths is None else \
        xp.minimum(_int_array(pred_lengths, pred, n, 'pred_lengths'), T)
    lab = xp.where(xp.arange(lab.shape[1])[None, :] < lengths[:, None], lab, blank)
    xd = pred._data if pred.dtype.kind == 'f' else pred._data.astype(np.float32)
    m = xd.max(axis=2, keepdims=True)
    lp = xd - m
    lp -= xp.log(xp.exp(lp).sum(axis=2, keepdims=True))
    ext, valid, skip = _extended_labels(xp, lab, lengths, blank)
    with np.errstate(invalid='ignore'):
        alpha, beta, emit, logp = _forward_backward(xp, lp, ext, valid, skip, t_len, lengths)
    loss = -logp
    if not tracked(pred):
        return _wrap(loss, pred._ctx)

    def backward(g):
        feasible = xp.isfinite(logp)
        safe = xp.where(feasible, logp, 0)
        with np.errstate(invalid='ignore'):
            occ = xp.exp(alpha + beta - emit - safe[None, :, None])
        occ = xp.where(xp.isfinite(occ), occ, 0).astype(lp.dtype)
        frames = (xp.arange(T)[:, None] < t_len[None, :]) & feasible[None, :]   # (T, N)
        grad = xp.exp(lp)
        counts = xp.zeros((T, n, C), dtype=lp.dtype)
        tt = xp.broadcast_to(xp.arange(T)[:, None, None], occ.shape)
        nn_ = xp.broadcast_to(xp.arange(n)[None, :, None], occ.shape)
        kk = xp.broadcast_to(ext[None], occ.shape)
        scatter_add(xp, counts, (tt.reshape(-1), nn_.reshape(-1), kk.reshape(-1)),
                    occ.reshape(-1))
        grad -= counts
        grad *= (frames * g[None, :]).astype(lp.dtype)[:, :, None]
        return (grad.astype(pred.dtype, copy=False),)
    return record_op(backward, (pred,), loss, pred._ctx, name='ctc_loss')
