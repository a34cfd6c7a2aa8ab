"""Dropout on a device: the mask is drawn on the device by a counter-based generator
(Philox4x32-10) at a position of ``xpnet.random``'s device stream, and drawn again in the
backward pass instead of being kept: one kernel each way, nothing copied from the host."""
from ... import random as _random
from ...backend.kernels import elementwise as _ew

__all__ = ['dropout']


def dropout(xp, xd, p, mshape, want_grad):
    """``(y, backward)``: the float device data ``xd`` with the dropout mask of rate ``p``
    (shape ``mshape``: ``xd``'s, or 1 along the shared ``axes``) applied."""
    shared = tuple(mshape) != tuple(xd.shape)
    n = 1
    for s in mshape:
        n *= int(s)
    key, base = _random.device_stream(-(-n // 4))
    if shared:
        mask = _ew.dropout_mask(xp, mshape, xd.dtype, p, key, base)
        y = xd * mask
    else:
        y = _ew.dropout(xp, xp.ascontiguousarray(xd), p, key, base)
    if not want_grad:
        return y, None

    def backward(g):
        if shared:
            return (g * mask,)
        return (_ew.dropout(xp, xp.ascontiguousarray(g), p, key, base),)
    return y, backward
