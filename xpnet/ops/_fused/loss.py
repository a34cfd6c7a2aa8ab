"""Sparse softmax cross-entropy on a device: one kernel gives the loss and the gradient
``softmax - onehot``; the backward scales the latter by the output gradient (one kernel)."""
import numpy as np

from ...backend.kernels import softmax as _sm
from ...backend.kernels.checks import LABEL_DTYPES
from .._base import _wrap, record_op, tracked

__all__ = ['applies', 'sparse_softmax_cross_entropy']


def applies(rows, label_data):
    """Whether the fused path takes this case: class axis last and contiguous logits,
    labels of a dtype the kernel reads."""
    return rows.last and rows.x2.flags.c_contiguous and \
        np.dtype(label_data.dtype) in LABEL_DTYPES


def sparse_softmax_cross_entropy(pred, label, rows, from_logits):
    """The device path of the sparse softmax cross-entropy over ``rows`` (the prediction
    as (M, n) with the class axis last, see ``ops.loss._ClassRows``)."""
    xp = rows.xp
    want = tracked(pred)
    loss, grad = _sm.softmax_cross_entropy(xp, rows.x2, label._data, from_logits, want)
    loss = loss.reshape(rows.out_shape)
    if not want:
        return _wrap(loss, pred._ctx)
    from ...backend.kernels.elementwise import scale_rows

    def backward(g):
        return (rows.restore(scale_rows(xp, grad, xp.ascontiguousarray(g).reshape(-1))),)
    return record_op(backward, (pred,), loss, pred._ctx, name='softmax_cross_entropy')
