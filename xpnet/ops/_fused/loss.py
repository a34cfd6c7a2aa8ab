"""Sparse softmax cross-entropy on a device: one kernel gives the loss and the gradient
``softmax - onehot``; the backward scales the latter by the output gradient (one kernel)."""
import numpy as np

from ...backend.kernels import elementwise as _ew
from ...backend.kernels import softmax as _sm
from ...backend.kernels.checks import LABEL_DTYPES

__all__ = ['applies', 'sparse_softmax_cross_entropy']


def applies(rows, label_data):
    """Whether the fused path takes this case: class axis last and contiguous logits,
    labels of a dtype the kernel reads."""
    return rows.last and rows.x2.flags.c_contiguous and \
        np.dtype(label_data.dtype) in LABEL_DTYPES


def sparse_softmax_cross_entropy(rows, label_data, from_logits, want_grad):
    """``(loss, backward)`` of the sparse softmax cross-entropy over ``rows`` (the
    prediction as (M, n) with the class axis last, see ``ops.loss._ClassRows``)."""
    xp = rows.xp
    loss, grad = _sm.softmax_cross_entropy(xp, rows.x2, label_data, from_logits, want_grad)
    loss = loss.reshape(rows.out_shape)
    if not want_grad:
        return loss, None

    def backward(g):
        return (rows.restore(_ew.scale_rows(xp, grad, xp.ascontiguousarray(g).reshape(-1))),)
    return loss, backward
