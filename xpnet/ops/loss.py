"""Fused loss ops: softmax cross-entropy and sigmoid binary cross-entropy, each one node
(the loss blocks of ``xpnet.loss`` call them).

Example::

    l = softmax_cross_entropy(logits, labels, axis=-1)           # labels: class indices
"""
import numpy as np

from ..backend.kernels import fused as _use_fused
from ._base import _wrap, float_data, needs_grad, norm_axis, record_op, tracked, unbroadcast
from .math import _sigmoid

__all__ = ['softmax_cross_entropy', 'sigmoid_binary_cross_entropy']


def softmax_cross_entropy(pred, label, axis=-1, sparse_label=True, from_logits=False):
    """Per-position ``-log_softmax(pred)[label]`` (sparse: ``label`` holds class indices,
    clipped to the valid range, with ``pred``'s shape without ``axis`` or with ``axis`` of
    size 1) or ``-sum(label * log_softmax(pred))`` (dense: ``label`` has ``pred``'s shape)
    along ``axis``, as one fused op. ``from_logits`` takes ``pred`` as log-probabilities.

    The class axis is moved last and the rest flattened, so every case runs as ``(M, n)``
    rows. The sparse backward is ``(softmax - onehot) * g`` from the saved ``exp``.
    """
    xp = pred.xp
    pd = float_data(pred._data)
    axis = norm_axis(axis, pd.ndim, 'SoftmaxCrossEntropyLoss')
    rows = _ClassRows(xp, pd, axis)
    if sparse_label:
        return _sparse_softmax_cross_entropy(pred, label, rows, from_logits)
    return _dense_softmax_cross_entropy(pred, label, rows, from_logits)


class _ClassRows:
    """The prediction with its class axis moved last and the rest flattened: ``x2`` is
    (M, n); :meth:`restore` takes an (M, n) array back to the prediction's layout."""

    def __init__(self, xp, pd, axis):
        self.xp, self.pd, self.axis = xp, pd, axis
        self.n = pd.shape[axis]
        self.last = axis == pd.ndim - 1
        moved = pd if self.last else xp.moveaxis(pd, axis, -1)
        self.moved_shape = moved.shape
        self.out_shape = moved.shape[:-1]
        self.x2 = moved.reshape(-1, self.n)
        self.M = self.x2.shape[0]

    def restore(self, a2):
        a = a2.reshape(self.moved_shape)
        return a if self.last else self.xp.moveaxis(a, -1, self.axis)

    def moved(self, a):
        """An array of the prediction's shape as (M, n) rows."""
        return (a if self.last else self.xp.moveaxis(a, self.axis, -1)).reshape(-1, self.n)


def _sparse_softmax_cross_entropy(pred, label, r, from_logits):
    """Class-index labels; the backward is ``(softmax - onehot) * g`` from the saved
    ``exp``."""
    xp, pd, axis, n, M, x2, out_shape = r.xp, r.pd, r.axis, r.n, r.M, r.x2, r.out_shape
    restore = r.restore
    ld = label._data
    if ld.shape != out_shape and ld.shape != pd.shape[:axis] + (1,) + pd.shape[axis + 1:]:
        raise ValueError(f'SoftmaxCrossEntropyLoss: label shape {label.shape} does not '
                         f'match prediction shape {pred.shape} (expected {out_shape}, '
                         f'the prediction without the class axis {axis})')
    if _use_fused(xp, pd.dtype):       # one kernel forward (loss and gradient), one backward
        from ._fused import loss as _device, record
        if _device.applies(r, ld):
            return record(_device.sparse_softmax_cross_entropy(r, ld, from_logits,
                                                               tracked(pred)),
                          (pred,), pred._ctx, 'softmax_cross_entropy')
    idx = ld.reshape(-1).astype(np.int64)      # a copy: clip in place (MXNet's pick)
    xp.maximum(idx, 0, out=idx)
    xp.minimum(idx, n - 1, out=idx)
    rows = xp.arange(M)
    if from_logits:
        loss = -x2[rows, idx]
    else:
        sh = x2 - x2.max(axis=1, keepdims=True)
        picked = sh[rows, idx]
        e = xp.exp(sh, out=sh)
        s = e.sum(axis=1)
        loss = xp.log(s)
        loss -= picked
    loss = loss.reshape(out_shape)
    if not tracked(pred):
        return _wrap(loss, pred._ctx)
    dtype = pd.dtype

    def backward(g):
        gf = g.reshape(-1)
        if from_logits:
            gp = xp.zeros((M, n), dtype=dtype)
            gp[rows, idx] = -gf
        else:
            gp = e * (gf / s)[:, None]
            gp[rows, idx] -= gf
        return (restore(gp),)
    return record_op(backward, (pred,), loss, pred._ctx, name='softmax_cross_entropy')


def _dense_softmax_cross_entropy(pred, label, r, from_logits):
    """Labels with the prediction's shape: ``-sum(label * log_softmax(pred))``."""
    xp, pd, x2, out_shape, restore = r.xp, r.pd, r.x2, r.out_shape, r.restore
    ld = label._data.astype(pd.dtype, copy=False)
    if ld.shape != pd.shape:
        raise ValueError(f'SoftmaxCrossEntropyLoss(sparse_label=False): label shape '
                         f'{label.shape} must equal prediction shape {pred.shape}')
    l2 = r.moved(ld)
    if from_logits:
        logp = x2
    else:
        logp = x2 - x2.max(axis=1, keepdims=True)
        logp -= xp.log(xp.exp(logp).sum(axis=1, keepdims=True))
    loss = -(logp * l2).sum(axis=1).reshape(out_shape)
    need = needs_grad(pred, label)
    if need is None:
        return _wrap(loss, pred._ctx)

    def backward_dense(g):
        gf = g.reshape(-1, 1)
        gp = gl = None
        if need[0]:
            if from_logits:
                gp = l2 * -gf
            else:
                gp = xp.exp(logp)
                gp *= l2.sum(axis=1, keepdims=True)
                gp -= l2
                gp *= gf
            gp = restore(gp)
        if need[1]:
            gl = restore(logp * -gf)
        return gp, gl
    return record_op(backward_dense, (pred, label), loss, pred._ctx, need=need,
                     name='softmax_cross_entropy')


def sigmoid_binary_cross_entropy(pred, label, pos_weight=None, from_sigmoid=False):
    """Elementwise binary cross-entropy. From logits: ``max(x,0) - x*z + log(1+exp(-|x|))``
    (stable); with ``pos_weight`` the positive term is weighted as in Gluon."""
    xp = pred.xp
    x = float_data(pred._data)
    z = label._data.astype(x.dtype, copy=False)
    if z.shape != x.shape:
        z = z.reshape(x.shape) if z.size == x.size else xp.broadcast_to(z, x.shape)
    pw = None if pos_weight is None else (
        pos_weight._data if hasattr(pos_weight, '_data') else pos_weight)
    if not from_sigmoid:
        softplus_neg = xp.log1p(xp.exp(-xp.abs(x)))  # log(1+exp(-|x|))
        if pw is None:
            loss = xp.maximum(x, 0) - x * z + softplus_neg
        else:
            # -(pw*z*log(sig) + (1-z)*log(1-sig)); log(sig) = -(softplus(-x))
            log_w = 1 + (pw - 1) * z
            loss = x - x * z + log_w * (softplus_neg + xp.maximum(-x, 0))
    else:
        eps = 1e-12
        if pw is None:
            loss = -(xp.log(x + eps) * z + xp.log(1 - x + eps) * (1 - z))
        else:
            loss = -(xp.log(x + eps) * z * pw + xp.log(1 - x + eps) * (1 - z))
    need = needs_grad(pred, label)
    if need is None:
        return _wrap(loss, pred._ctx)

    def backward(g):
        if not from_sigmoid:
            s = _sigmoid(xp, x)
            if pw is None:
                gx = (s - z) * g
                gz = -x * g if need[1] else None
            else:
                log_w = 1 + (pw - 1) * z
                gx = (1 - z - log_w * (1 - s)) * g
                gz = (-x + (pw - 1) * (softplus_neg + xp.maximum(-x, 0))) * g \
                    if need[1] else None
        else:
            eps = 1e-12
            w1 = z if pw is None else z * pw
            gx = (-w1 / (x + eps) + (1 - z) / (1 - x + eps)) * g
            gz = (-(xp.log(x + eps) * (1 if pw is None else pw)) + xp.log(1 - x + eps)) * g \
                if need[1] else None
        if gz is not None:
            gz = gz.reshape(label.shape) if gz.size == label.size else \
                unbroadcast(gz, label.shape)
        return gx, gz
    return record_op(backward, (pred, label), loss, pred._ctx, name='sigmoid_bce')
