"""Convolutions on a device: im2col (one kernel) + one GEMM forward and the bias in one
more; backward the weight gradient as one GEMM straight into a fresh weight-shaped array,
the input gradient as one GEMM + the gather col2im (deterministic), the bias gradient as
one column-sum kernel. A 1x1, stride-1, unpadded convolution of a channels-last input
skips the unfolding. One group only (grouped convolutions take the generic path)."""
from ...backend.kernels import conv as _k
from ...backend.kernels import elementwise as _ew
from .._base import record_op, _wrap
from .._im2col import from_nsc, prod, to_nsc

__all__ = ['applies', 'convolution']


def applies(xp, dtype, geo):
    from ...backend.kernels import fused
    return fused(xp, dtype) and geo.groups == 1 and len(geo.kernel) <= 3


def _unfolded(xp, x, cg):
    """The column matrix; a channels-last contiguous input of a 1x1 convolution is its own."""
    if cg.K == 1 and cg.stride == (1, 1, 1) and cg.pad == (0, 0, 0) \
            and x.flags.c_contiguous:
        return x.reshape(cg.rows, cg.C), True
    return _k.im2col(xp, x, cg), False


def convolution(data, weight, bias, xd, wd, geo, need):
    """The device path of ``ops.convolution`` (arguments already checked by it)."""
    xp = data.xp
    x = to_nsc(xd, geo.last)
    N, C, O = x.shape[0], x.shape[-1], geo.wshape[0]
    cg = _k.Geometry(N, C, geo.size, geo.kernel, geo.stride, geo.pad, geo.dilate, geo.out,
                     c_first=not geo.last)
    wm = wd.reshape(O, -1)                     # (O, C*K) or (O, K*C): a view
    col, direct = _unfolded(xp, x, cg)
    y2 = xp.matmul(col, wm.T)
    if bias is not None:
        _ew.bias_act(xp, y2, bias._data.astype(y2.dtype, copy=False), None)
    y = y2.reshape((N,) + tuple(geo.out) + (O,))
    result = from_nsc(y, geo.last)
    if need is None:
        return _wrap(result, data._ctx)
    in_dtype = data.dtype

    def backward(g):
        g2 = xp.ascontiguousarray(to_nsc(g, geo.last)).reshape(cg.rows, O)
        gx = gw = gb = None
        if need[0]:
            gcol = xp.matmul(g2, wm)
            gx = gcol.reshape(x.shape) if direct else _k.col2im(xp, gcol, cg, gcol.dtype)
            gx = from_nsc(gx.reshape((N,) + tuple(geo.size) + (C,)), geo.last)
            if gx.dtype != in_dtype:
                gx = gx.astype(in_dtype)
        if need[1]:
            gw = xp.empty(wd.shape, dtype=wd.dtype)
            xp.matmul(g2.T, col, out=gw.reshape(O, -1))
        if need[2]:
            gb = _ew.column_sum(xp, g2)
        return gx, gw, gb
    return record_op(backward, (data, weight, bias), result, data._ctx, need=need,
                     name='convolution')


del prod
