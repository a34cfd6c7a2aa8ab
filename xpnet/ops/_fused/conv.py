"""Convolutions on a device: im2col (one kernel) + one GEMM forward and the bias in one
more; backward the weight gradient as one GEMM straight into a fresh weight-shaped array,
the input gradient as one GEMM + the gather col2im (deterministic), the bias gradient as
one column-sum kernel. A 1x1, stride-1, unpadded convolution of a channels-last input
skips the unfolding. One group only (grouped convolutions take the generic path)."""
from ...backend.kernels import conv as _k
from ...backend.kernels import elementwise as _ew
from .._im2col import to_nsc

__all__ = ['applies', 'forward']


def applies(xp, dtype, geo):
    from ...backend.kernels import fused
    return fused(xp, dtype) and geo.groups == 1 and len(geo.kernel) <= 3


def _unfolded(xp, x, cg):
    """The column matrix; a channels-last contiguous input of a 1x1 convolution is its own."""
    if cg.K == 1 and cg.stride == (1, 1, 1) and cg.pad == (0, 0, 0) \
            and x.flags.c_contiguous:
        return x.reshape(cg.rows, cg.C), True
    return _k.im2col(xp, x, cg), False


def forward(xp, xd, wd, bd, geo, need):
    """A path of ``ops.convolution`` (its contract: the channels-last output and its
    backward, which takes the C-contiguous channels-last output gradient and returns the
    channels-last input gradient, the weight and the bias gradients)."""
    x = to_nsc(xd, geo.last)
    N, C, O = x.shape[0], x.shape[-1], geo.wshape[0]
    cg = _k.Geometry(N, C, geo.size, geo.kernel, geo.stride, geo.pad, geo.dilate, geo.out,
                     c_first=not geo.last)
    wm = wd.reshape(O, -1)                     # (O, C*K) or (O, K*C): a view
    col, direct = _unfolded(xp, x, cg)
    y2 = xp.matmul(col, wm.T)
    if bd is not None:
        _ew.bias_act(xp, y2, bd.astype(y2.dtype, copy=False), None)
    y = y2.reshape((N,) + tuple(geo.out) + (O,))
    if need is None:
        return y, None

    def backward(g):
        g2 = g.reshape(cg.rows, O)
        gx = gw = gb = None
        if need[0]:
            gcol = xp.matmul(g2, wm)
            gx = (gcol if direct else _k.col2im(xp, gcol, cg, gcol.dtype)).reshape(x.shape)
        if need[1]:
            gw = xp.empty(wd.shape, dtype=wd.dtype)
            xp.matmul(g2.T, col, out=gw.reshape(O, -1))
        if need[2]:
            gb = _ew.column_sum(xp, g2)
        return gx, gw, gb
    return y, backward
