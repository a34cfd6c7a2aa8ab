"""Per-channel work on channels-last (rows, channels) matrices, with long inner loops.

Convolution outputs are kept channels-last, so bias adds, BatchNorm and bias gradients work
on an (R, C) matrix with small C (16-64). Broadcasting a (C,) vector over it makes NumPy's
inner loop run C elements per row; viewing the matrix as (R/k, k*C) and tiling the vector k
times makes it run k*C (measured for (32768, 32) float32: multiply 0.47 -> 0.24 ms, GEMV
channel sums 0.14 -> 0.06 ms).

Example::

    k = widening(R, C)
    rows = x2.reshape(R // k, k * C)
    rows += tile(xp, bias, k)
    total = fold(ones(R // k) @ rows, k, C)
"""

__all__ = ['widening', 'tile', 'fold', 'channel_sum', 'add_channel_vector']


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
    # broadcast + reshape: np.tile's copy without its Python overhead (~12 us a call)
    return xp.broadcast_to(v, (k, v.shape[0])).reshape(k * v.shape[0])


def fold(v, k, C):
    """(k*C,) per-column sums of a widened matrix -> (C,) per-channel sums."""
    return v.reshape(k, C).sum(axis=0) if k > 1 else v


def channel_sum(xp, a):
    """Sum of a channels-last (..., C) array over everything but C, as one GEMV."""
    a2 = xp.ascontiguousarray(a).reshape(-1, a.shape[-1])
    R, C = a2.shape
    k = widening(R, C)
    rows = a2.reshape(R // k, k * C)
    return fold(xp.ones(R // k, dtype=a2.dtype) @ rows, k, C)


def add_channel_vector(xp, a, v):
    """``a += v`` for a C-contiguous channels-last (..., C) array and a (C,) vector."""
    C = a.shape[-1]
    R = a.size // C if C else 0
    if not a.flags.c_contiguous or R == 0:
        a += v
        return
    k = widening(R, C)
    a.reshape(R // k, k * C)[...] += tile(xp, v, k)
