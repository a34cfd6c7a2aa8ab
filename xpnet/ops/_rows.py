"""Per-channel work on channels-last (rows, channels) matrices, with long inner loops
(and the ReLU kernel, which needs the same trick).

Convolution outputs are kept channels-last, so bias adds, BatchNorm and bias gradients work
on an (R, C) matrix with small C (16-64). Broadcasting a (C,) vector over it makes NumPy's
inner loop run C elements per row; viewing the matrix as (R/k, k*C) and tiling the vector k
times makes it run k*C, about twice as fast (``docs/performance.md``).

Example::

    k = widening(R, C)
    rows = x2.reshape(R // k, k * C)
    rows += tile(xp, bias, k)
    total = fold(ones(R // k) @ rows, k, C)
"""

import numpy as np

from ..backend.hostpool import matmul as _mm
from ..backend.memory import scratch

__all__ = ['widening', 'tile', 'fold', 'channel_sum', 'add_channel_vector', 'relu_values',
           'relu_grad']


def widening(R, C, width=1024):
    """The largest power of two k dividing ``R`` with ``k * C <= width`` (at least 1)."""
    k = 1
    while R % (2 * k) == 0 and 2 * k * C <= width:
        k *= 2
    return k


def tile(xp, v, k):
    """(C,) -> (k*C,): the vector repeated for the k channel groups of a widened row."""
    if k == 1:
        return v
    # broadcast + reshape: np.tile's copy without its Python overhead
    return xp.broadcast_to(v, (k, v.shape[0])).reshape(k * v.shape[0])


def fold(v, k, C):
    """(k*C,) per-column sums of a widened matrix -> (C,) per-channel sums."""
    return v.reshape(k, C).sum(axis=0) if k > 1 else v


def channel_sum(xp, a):
    """Sum of a channels-last (..., C) array over everything but C, as one GEMV."""
    a2 = scratch.contiguous(xp, a).reshape(-1, a.shape[-1])
    R, C = a2.shape
    k = widening(R, C)
    rows = a2.reshape(R // k, k * C)
    return fold(_mm(xp.ones(R // k, dtype=a2.dtype), rows), k, C)


def add_channel_vector(xp, a, v):
    """``a += v`` for a C-contiguous channels-last (..., C) array and a (C,) vector."""
    C = a.shape[-1]
    R = a.size // C if C else 0
    if not a.flags.c_contiguous or R == 0:
        a += v
        return
    k = widening(R, C)
    a.reshape(R // k, k * C)[...] += tile(xp, v, k)


# NumPy's SIMD loop for ``maximum`` runs only when both operands are contiguous: a ReLU
# against a zero row broadcast over rows of this length is ~3x faster than against 0.
_RELU_ROW = 16384
_zero_rows = {}


def _flat(a, order):
    """The 1-D view of ``a``'s memory in the axis order ``order``, or None."""
    t = a.transpose(order)
    return t.reshape(-1) if t.flags.c_contiguous else None


def relu_values(xp, x, out=None):
    """``max(x, 0)`` (into ``out`` when given, which may be ``x``), NaN kept as NaN.

    On the host, a float array whose memory is one contiguous block (in any axis order:
    channels-last outputs are transposed views) is processed as rows against a cached row
    of zeros; anything else uses ``xp.maximum(x, 0)``."""
    if type(x) is not np.ndarray or x.dtype.kind != 'f' or x.size < _RELU_ROW:
        return xp.maximum(x, 0, out=out)
    if out is None:
        out = scratch.empty_like(x)        # same memory order as x
    order = sorted(range(x.ndim), key=lambda i: -x.strides[i])
    fx, fy = _flat(x, order), _flat(out, order)
    if fx is None or fy is None or out.strides != x.strides:
        return np.maximum(x, 0, out=out)
    zero = _zero_rows.get(x.dtype)
    if zero is None:
        zero = _zero_rows.setdefault(x.dtype, np.zeros(_RELU_ROW, dtype=x.dtype))
    m = fx.size - fx.size % _RELU_ROW
    np.maximum(fx[:m].reshape(-1, _RELU_ROW), zero, out=fy[:m].reshape(-1, _RELU_ROW))
    if m < fx.size:
        np.maximum(fx[m:], 0, out=fy[m:])
    return out


def relu_grad(xp, g, x):
    """The ReLU's gradient ``g * (x > 0)`` (a NaN in ``g`` stays NaN); on the host into
    pooled memory laid out like ``g`` (``backend.memory``)."""
    if type(g) is not np.ndarray or type(x) is not np.ndarray:
        return g * (x > 0)
    mask = np.greater(x, 0, out=scratch.empty_like(x, dtype=np.bool_))
    return np.multiply(g, mask, out=scratch.empty_like(g, dtype=np.result_type(g, mask)))
