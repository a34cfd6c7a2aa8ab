"""Fully-connected layers on a device: one GEMM and one bias + activation kernel forward;
one activation-gradient + bias-gradient kernel and the two GEMMs backward."""
from ...backend.kernels import elementwise as _ew
from .._base import _wrap, record_op

__all__ = ['fully_connected']


def fully_connected(x, weight, bias, x2, wd, xshape, out_shape, act, need):
    """The device path of :func:`xpnet.ops.fully_connected` (arguments already checked):
    ``x2`` is the (rows, in_units) input in the weight's dtype, ``need`` the gradient
    flags of (x, weight, bias) or None."""
    xp = x._ctx.xp
    bd = None if bias is None else bias._data
    y = xp.matmul(x2, wd.T)
    if bd is not None or act is not None:
        _ew.bias_act(xp, y, bd, act)
    y2 = y
    if out_shape is not None:
        y = y.reshape(out_shape)
    if need is None:
        return _wrap(y, x._ctx)

    def backward(g):
        g2 = xp.ascontiguousarray(g.reshape(-1, g.shape[-1]))
        gz, gb = _ew.act_bias_grad(xp, g2, y2, act, want_gz=True,
                                   want_gb=bias is not None and need[2])
        gx = xp.matmul(gz, wd).reshape(xshape) if need[0] else None
        gw = xp.matmul(gz.T, x2) if need[1] else None
        return gx, gw, gb
    return record_op(backward, (x, weight, bias), y, x._ctx, name='fully_connected')
