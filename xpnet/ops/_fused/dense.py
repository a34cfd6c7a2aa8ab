"""Fully-connected layers on a device: one GEMM and one bias + activation kernel forward;
one activation-gradient + bias-gradient kernel and the two GEMMs backward."""
from ...backend.kernels import elementwise as _ew

__all__ = ['forward']


def forward(xp, x2, wd, bd, xshape, out_shape, act, need):
    """``(y, backward)`` of :func:`xpnet.ops.fully_connected` on a device (arguments
    checked by it): ``x2`` is the (rows, in_units) input in the weight's dtype, ``bd`` the
    bias data or None, ``need`` the gradient flags of (x, weight, bias) or None."""
    y = xp.matmul(x2, wd.T)
    if bd is not None or act is not None:
        _ew.bias_act(xp, y, bd, act)
    y2 = y
    if out_shape is not None:
        y = y.reshape(out_shape)
    if need is None:
        return y, None

    def backward(g):
        g2 = xp.ascontiguousarray(g.reshape(-1, g.shape[-1]))
        gz, gb = _ew.act_bias_grad(xp, g2, y2, act, want_gz=True,
                                   want_gb=bd is not None and need[2])
        gx = xp.matmul(gz, wd).reshape(xshape) if need[0] else None
        gw = xp.matmul(gz.T, x2) if need[1] else None
        return gx, gw, gb
    return y, backward
