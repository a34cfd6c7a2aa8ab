"""Matrix products: dot (MXNet semantics), batch_dot, matmul, and the fused fully-connected op."""
from ._base import _state, _wrap, promote, record_op, same_ctx, to_nd, unbroadcast
from ..backend.hostpool import threaded_matmul as _mt
from ..backend.kernels import fused as _use_fused
from ._rows import relu_values

__all__ = ['dot', 'batch_dot', 'matmul', 'fully_connected']



def _need(*xs):
    if not _state.recording:
        return None
    flags = tuple(x is not None and (x._node is not None or x._grad is not None) for x in xs)
    return flags if True in flags else None


def dot(a, b, transpose_a=False, transpose_b=False):
    """MXNet's dot: contract the last axis of ``a`` with the first axis of ``b``
    (a matrix product for 2-D inputs); ``transpose_*`` reverse an input's axes first."""
    b = to_nd(b, a, 'dot')
    same_ctx(a, b, 'dot')
    if transpose_a:
        from .shape import transpose
        a = transpose(a)
    if transpose_b:
        from .shape import transpose
        b = transpose(b)
    ad, bd = promote(a, b)
    if a.ndim == 0 or b.ndim == 0:
        from .math import multiply
        return multiply(a, b)
    if ad.shape[-1] != bd.shape[0]:
        raise ValueError(f'dot: shapes {a.shape} and {b.shape} are not aligned '
                         f'({ad.shape[-1]} != {bd.shape[0]})')
    k = bd.shape[0]
    a2 = ad.reshape(-1, k)
    b2 = bd.reshape(k, -1)
    out_shape = ad.shape[:-1] + bd.shape[1:]
    y = _mt(a2, b2).reshape(out_shape)
    need = _need(a, b)
    if need is None:
        return _wrap(y, a._ctx)
    sa, sb = ad.shape, bd.shape

    def backward(g):
        g2 = g.reshape(a2.shape[0], b2.shape[1])
        return (_mt(g2, b2.T).reshape(sa) if need[0] else None,
                _mt(a2.T, g2).reshape(sb) if need[1] else None)
    return record_op(backward, (a, b), y, a._ctx, name='dot')


def batch_dot(a, b, transpose_a=False, transpose_b=False):
    """Batched matrix product of (B, M, K) and (B, K, N) arrays (with optional transposes)."""
    b = to_nd(b, a, 'batch_dot')
    same_ctx(a, b, 'batch_dot')
    if a.ndim < 3 or b.ndim < 3:
        raise ValueError(f'batch_dot: expected arrays of at least 3 dimensions, got shapes '
                         f'{a.shape} and {b.shape}')
    ad, bd = promote(a, b)
    at = ad.swapaxes(-1, -2) if transpose_a else ad
    bt = bd.swapaxes(-1, -2) if transpose_b else bd
    if at.shape[-1] != bt.shape[-2] or at.shape[:-2] != bt.shape[:-2]:
        raise ValueError(f'batch_dot: shapes {a.shape} and {b.shape} are not aligned '
                         f'(transpose_a={transpose_a}, transpose_b={transpose_b})')
    y = _mt(at, bt)
    need = _need(a, b)
    if need is None:
        return _wrap(y, a._ctx)

    def backward(g):
        ga = gb = None
        if need[0]:
            ga = _mt(bt, g.swapaxes(-1, -2)) if transpose_a else _mt(g, bt.swapaxes(-1, -2))
        if need[1]:
            gb = _mt(g.swapaxes(-1, -2), at) if transpose_b else _mt(at.swapaxes(-1, -2), g)
        return ga, gb
    return record_op(backward, (a, b), y, a._ctx, name='batch_dot')


def matmul(a, b):
    """NumPy's ``a @ b`` with broadcasting over leading axes."""
    b = to_nd(b, a, 'matmul')
    same_ctx(a, b, 'matmul')
    ad, bd = promote(a, b)
    xp = a.xp
    try:
        y = _mt(ad, bd)
    except ValueError as err:
        raise ValueError(f'matmul: shapes {a.shape} and {b.shape} are not aligned: {err}') \
            from None
    need = _need(a, b)
    if need is None:
        return _wrap(y, a._ctx)
    sa, sb = ad.shape, bd.shape

    def backward(g):
        a2 = ad[None, :] if ad.ndim == 1 else ad
        b2 = bd[:, None] if bd.ndim == 1 else bd
        g2 = g
        if ad.ndim == 1:
            g2 = xp.expand_dims(g2, -2)
        if bd.ndim == 1:
            g2 = xp.expand_dims(g2, -1)
        ga = unbroadcast(_mt(g2, b2.swapaxes(-1, -2)), a2.shape).reshape(sa) \
            if need[0] else None
        gb = unbroadcast(_mt(a2.swapaxes(-1, -2), g2), b2.shape).reshape(sb) \
            if need[1] else None
        return ga, gb
    return record_op(backward, (a, b), y, a._ctx, name='matmul')


def _act_forward(xp, y, act):
    """Apply ``act`` to ``y`` in place (``y`` is the op's own fresh output)."""
    if act == 'relu':
        relu_values(xp, y, out=y)
    elif act == 'tanh':
        xp.tanh(y, out=y)
    elif act == 'sigmoid':
        from .math import _sigmoid
        y[...] = _sigmoid(xp, y)
    return y


def _act_backward(g, y, act):
    """d(act)/d(pre-activation) from the activation's output ``y``, times ``g``."""
    if act == 'relu':
        return g * (y > 0)
    if act == 'tanh':
        return g * (1 - y * y)
    return g * (y * (1 - y))           # sigmoid


FUSED_ACTIVATIONS = ('relu', 'tanh', 'sigmoid')


def fully_connected(x, weight, bias=None, flatten=True, act=None):
    """``act(x @ weight.T + bias)`` with Gluon's Dense layout: weight is (units, in_units).

    ``flatten=True`` collapses all axes of ``x`` after the first; ``False`` applies the
    product to the last axis only. ``act`` ('relu', 'tanh', 'sigmoid' or None) is applied
    in place and differentiated from its output, so Dense with an activation is one node.
    """
    same_ctx(x, weight, 'fully_connected')
    if act is not None and act not in FUSED_ACTIVATIONS:
        raise ValueError(f'fully_connected: act must be one of {FUSED_ACTIVATIONS} or None, '
                         f'got {act!r}')
    xd, wd = x._data, weight._data
    if xd.dtype != wd.dtype:
        xd = xd.astype(wd.dtype)
    in_units = wd.shape[1]
    xshape = xd.shape
    if flatten:
        x2 = xd.reshape(xshape[0], -1) if xd.ndim != 2 else xd
        out_shape = None
    else:
        x2 = xd.reshape(-1, xshape[-1]) if xd.ndim != 2 else xd
        out_shape = xshape[:-1] + (wd.shape[0],)
    if x2.shape[1] != in_units:
        raise ValueError(f'Dense: input has {x2.shape[1]} features (shape {xshape}, '
                         f'flatten={flatten}) but the weight expects {in_units} '
                         f'(weight shape {wd.shape})')
    xp = x._ctx.xp
    if _use_fused(xp, wd.dtype):       # one GEMM + one bias/activation kernel each way
        from ._fused import dense, record
        return record(dense.forward(xp, x2, wd, None if bias is None else bias._data, xshape,
                                    out_shape, act, _need(x, weight, bias)),
                      (x, weight, bias), x._ctx, 'fully_connected')
    y = _mt(x2, wd.T)
    if bias is not None:
        y += bias._data
    if act is not None:
        _act_forward(xp, y, act)
    if out_shape is not None:
        y = y.reshape(out_shape)
    need = _need(x, weight, bias)
    if need is None:
        return _wrap(y, x._ctx)
    y2 = y.reshape(-1, y.shape[-1]) if y.ndim != 2 else y

    def backward(g):
        g2 = g.reshape(-1, g.shape[-1]) if g.ndim != 2 else g
        if act is not None:
            g2 = _act_backward(g2, y2, act)
        gx = _mt(g2, wd).reshape(xshape) if need[0] else None
        gw = _mt(g2.T, x2) if need[1] else None
        gb = g2.sum(axis=0) if bias is not None and need[2] else None
        return gx, gw, gb
    return record_op(backward, (x, weight, bias), y, x._ctx, name='fully_connected')
