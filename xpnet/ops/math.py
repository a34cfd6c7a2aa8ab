"""Elementwise arithmetic and math functions with their gradients."""
import numpy as np

from ._base import (NDArray, _state, _wrap, is_scalar, promote, promote_scalar, record_op,
                    same_ctx, scalar, to_nd, unbroadcast)
from ._rows import relu_grad, relu_values

__all__ = ['add', 'subtract', 'rsubtract', 'multiply', 'divide', 'rdivide', 'power', 'rpower',
           'floor_divide', 'mod', 'negative', 'compare', 'maximum', 'minimum', 'where', 'clip',
           'exp', 'log', 'sqrt', 'rsqrt', 'square', 'abs', 'sign', 'reciprocal', 'sin', 'cos',
           'log1p', 'expm1', 'floor', 'ceil', 'round', 'sigmoid', 'tanh', 'relu', 'astype',
           'stop_gradient', 'identity', 'copy_to_context', 'erf']


def _tracked1(x):
    return _state.recording and (x._node is not None or x._grad is not None)


def _binary_parts(a, b, op):
    """(a_data, b_data, b_nd) with ``b`` either an NDArray or a Python scalar."""
    tb = type(b)
    if tb is float or tb is int:      # the common scalar case, without ABC isinstance checks
        ad = a._data
        if tb is float and ad.dtype.kind in 'iub':
            ad = ad.astype(np.float32)
        return ad, b, None
    if tb is NDArray:
        same_ctx(a, b, op)
        ad, bd = promote(a, b)
        return ad, bd, b
    if is_scalar(b):
        b = scalar(b)
        return promote_scalar(a, b), b, None
    b = to_nd(b, a, op)
    ad, bd = promote(a, b)
    return ad, bd, b


def _need2(a, b):
    if not _state.recording:
        return None
    na = a._node is not None or a._grad is not None
    nb = b is not None and (b._node is not None or b._grad is not None)
    return (na, nb) if (na or nb) else None


def add(a, b):
    """a + b with broadcasting."""
    ad, bd, b = _binary_parts(a, b, 'add')
    y = ad + bd
    need = _need2(a, b)
    if need is None:
        return _wrap(y, a._ctx)
    sa, sb = ad.shape, (bd.shape if b is not None else None)
    return record_op(lambda g: (unbroadcast(g, sa) if need[0] else None,
                                unbroadcast(g, sb) if need[1] else None),
                     (a, b), y, a._ctx, name='add')


def subtract(a, b):
    """a - b with broadcasting."""
    ad, bd, b = _binary_parts(a, b, 'subtract')
    y = ad - bd
    need = _need2(a, b)
    if need is None:
        return _wrap(y, a._ctx)
    sa, sb = ad.shape, (bd.shape if b is not None else None)
    return record_op(lambda g: (unbroadcast(g, sa) if need[0] else None,
                                -unbroadcast(g, sb) if need[1] else None),
                     (a, b), y, a._ctx, name='subtract')


def rsubtract(a, b):
    """b - a (reflected)."""
    if is_scalar(b):
        b = scalar(b)
        y = b - promote_scalar(a, b)
        if not _tracked1(a):
            return _wrap(y, a._ctx)
        return record_op(lambda g: (-g,), (a,), y, a._ctx, name='rsubtract')
    return subtract(to_nd(b, a, 'subtract'), a)


def multiply(a, b):
    """a * b with broadcasting."""
    ad, bd, b = _binary_parts(a, b, 'multiply')
    y = ad * bd
    need = _need2(a, b)
    if need is None:
        return _wrap(y, a._ctx)
    if b is None:
        return record_op(lambda g: (g * bd,), (a, None), y, a._ctx, name='multiply')
    sa, sb = ad.shape, bd.shape
    return record_op(lambda g: (unbroadcast(g * bd, sa) if need[0] else None,
                                unbroadcast(g * ad, sb) if need[1] else None),
                     (a, b), y, a._ctx, name='multiply')


def divide(a, b):
    """a / b with broadcasting."""
    ad, bd, b = _binary_parts(a, b, 'divide')
    if ad.dtype.kind in 'iub' and (b is None or bd.dtype.kind in 'iub'):
        ad = ad.astype(np.float32)
    y = ad / bd
    need = _need2(a, b)
    if need is None:
        return _wrap(y, a._ctx)
    if b is None:
        inv = 1.0 / bd
        return record_op(lambda g: (g * inv,), (a, None), y, a._ctx, name='divide')
    sa, sb = ad.shape, bd.shape
    return record_op(lambda g: (unbroadcast(g / bd, sa) if need[0] else None,
                                unbroadcast(-g * y / bd, sb) if need[1] else None),
                     (a, b), y, a._ctx, name='divide')


def rdivide(a, b):
    """b / a (reflected)."""
    if is_scalar(b):
        b = scalar(b)
        ad = promote_scalar(a, float(b))
        y = b / ad
        if not _tracked1(a):
            return _wrap(y, a._ctx)
        return record_op(lambda g: (-g * y / ad,), (a,), y, a._ctx, name='rdivide')
    return divide(to_nd(b, a, 'divide'), a)


def power(a, b):
    """a ** b with broadcasting."""
    ad, bd, b = _binary_parts(a, b, 'power')
    xp = a.xp
    y = ad ** bd
    need = _need2(a, b)
    if need is None:
        return _wrap(y, a._ctx)
    if b is None:
        if bd == 2:
            return record_op(lambda g: (g * (2 * ad),), (a, None), y, a._ctx, name='square')
        return record_op(lambda g: (g * (bd * ad ** (bd - 1)),), (a, None), y, a._ctx,
                         name='power')
    sa, sb = ad.shape, bd.shape

    def backward(g):
        ga = unbroadcast(g * bd * ad ** (bd - 1), sa) if need[0] else None
        gb = None
        if need[1]:   # log only of positive values: nothing to silence (errstate is host-only)
            logs = xp.where(ad > 0, xp.log(xp.where(ad > 0, ad, 1)), 0)
            gb = unbroadcast(g * y * logs, sb)
        return ga, gb
    return record_op(backward, (a, b), y, a._ctx, name='power')


def rpower(a, b):
    """b ** a (reflected)."""
    if is_scalar(b):
        b = scalar(b)
        ad = promote_scalar(a, float(b))
        y = b ** ad
        if not _tracked1(a):
            return _wrap(y, a._ctx)
        lb = float(np.log(b)) if b > 0 else float('nan')
        return record_op(lambda g: (g * y * lb,), (a,), y, a._ctx, name='rpower')
    return power(to_nd(b, a, 'power'), a)


def floor_divide(a, b):
    """a // b (no gradient)."""
    ad, bd, _ = _binary_parts(a, b, 'floor_divide')
    return _wrap(ad // bd, a._ctx)


def mod(a, b):
    """a % b (gradient 1 with respect to a)."""
    ad, bd, b = _binary_parts(a, b, 'mod')
    y = ad % bd
    if not _tracked1(a):
        return _wrap(y, a._ctx)
    sa = ad.shape
    return record_op(lambda g: (unbroadcast(g, sa), None), (a, None), y, a._ctx, name='mod')


def negative(a):
    y = -a._data
    if not _tracked1(a):
        return _wrap(y, a._ctx)
    return record_op(lambda g: (-g,), (a,), y, a._ctx, name='negative')


_CMP = {'equal': 'equal', 'not_equal': 'not_equal', 'less': 'less',
        'less_equal': 'less_equal', 'greater': 'greater', 'greater_equal': 'greater_equal'}


def compare(a, b, how):
    """Elementwise comparison; 1/0 in ``a``'s dtype (MXNet's convention). No gradient."""
    if b is None:
        return _wrap(a.xp.zeros(a.shape, a.dtype), a._ctx) if how != 'not_equal' else \
            _wrap(a.xp.ones(a.shape, a.dtype), a._ctx)
    ad, bd, _ = _binary_parts(a, b, how)
    res = getattr(a.xp, _CMP[how])(ad, bd)
    dtype = ad.dtype if ad.dtype.kind != 'b' else np.float32
    return _wrap(res.astype(dtype), a._ctx)


def _minmax(a, b, pick_a):
    ad, bd, b = _binary_parts(a, b, 'maximum')
    xp = a.xp
    mask = pick_a(ad, bd)
    y = xp.where(mask, ad, bd)
    need = _need2(a, b)
    if need is None:
        return _wrap(y, a._ctx)
    sa = ad.shape
    sb = bd.shape if b is not None else None
    return record_op(lambda g: (unbroadcast(xp.where(mask, g, 0), sa) if need[0] else None,
                                unbroadcast(xp.where(mask, 0, g), sb) if need[1] else None),
                     (a, b), y, a._ctx, name='maximum')


def maximum(a, b):
    """Elementwise maximum; on ties the gradient goes to ``a``."""
    if not isinstance(a, NDArray):
        a, b = b, a
    return _minmax(a, b, lambda x, y: x >= y)


def minimum(a, b):
    """Elementwise minimum; on ties the gradient goes to ``a``."""
    if not isinstance(a, NDArray):
        a, b = b, a
    return _minmax(a, b, lambda x, y: x <= y)


def where(condition, x, y):
    """``x`` where ``condition`` is non-zero, else ``y`` (gradients flow to x and y)."""
    ref = x if isinstance(x, NDArray) else (y if isinstance(y, NDArray) else condition)
    xp = ref.xp
    cond = to_nd(condition, ref, 'where')._data != 0
    xd = x._data if isinstance(x, NDArray) else scalar(x)
    yd = y._data if isinstance(y, NDArray) else scalar(y)
    out = xp.where(cond, xd, yd)
    if out.dtype != ref.dtype and ref.dtype.kind == 'f' and out.dtype.kind == 'f':
        out = out.astype(ref.dtype)
    nx = isinstance(x, NDArray) and _tracked1(x)
    ny = isinstance(y, NDArray) and _tracked1(y)
    if not (nx or ny):
        return _wrap(out, ref._ctx)
    sx = x.shape if nx else None
    sy = y.shape if ny else None
    return record_op(lambda g: (unbroadcast(xp.where(cond, g, 0), sx) if nx else None,
                                unbroadcast(xp.where(cond, 0, g), sy) if ny else None),
                     (x if nx else None, y if ny else None), out, ref._ctx, name='where')


def clip(x, a_min, a_max):
    """Clip to [a_min, a_max]; the gradient passes where the input is inside the range."""
    xd = x._data
    xp = x.xp
    a_min = None if a_min is None else scalar(a_min)
    a_max = None if a_max is None else scalar(a_max)
    y = xp.clip(xd, a_min, a_max)
    if not _tracked1(x):
        return _wrap(y, x._ctx)

    def backward(g):
        mask = True
        if a_min is not None:
            mask = xd >= a_min
        if a_max is not None:
            mask = mask & (xd <= a_max) if a_min is not None else xd <= a_max
        return (xp.where(mask, g, 0),)
    return record_op(backward, (x,), y, x._ctx, name='clip')


# ---- unary functions: f(xp, x) -> y and df(xp, x, y, g) -> grad ---------------------------

def _unary(name, f, df, float_only=True):
    def op(x):
        xd = x._data
        if float_only and xd.dtype.kind != 'f':
            xd = xd.astype(np.float32)
        xp = x._ctx.xp
        y = f(xp, xd)
        if not (_state.recording and (x._node is not None or x._grad is not None)):
            return _wrap(y, x._ctx)
        return record_op(lambda g: (df(xp, xd, y, g),), (x,), y, x._ctx, name=name)
    op.__name__ = name
    op.__doc__ = f'Elementwise {name}.'
    return op


def _sigmoid(xp, x):
    # 1/(1+exp(-x)) without overflow: below the clip exp(-x) would overflow the dtype.
    lim = 88.0 if x.dtype.itemsize <= 4 else 709.0
    if x.ndim == 0:
        return xp.asarray(1.0 / (1.0 + xp.exp(-xp.maximum(x, -lim)))).astype(x.dtype)
    t = xp.maximum(x, -lim)
    xp.negative(t, out=t)
    xp.exp(t, out=t)
    t += 1
    return xp.reciprocal(t, out=t)


def _erf_fn(xp, x):
    from ..backend.special import erf
    return erf(xp, x)


exp = _unary('exp', lambda xp, x: xp.exp(x), lambda xp, x, y, g: g * y)
log = _unary('log', lambda xp, x: xp.log(x), lambda xp, x, y, g: g / x)
sqrt = _unary('sqrt', lambda xp, x: xp.sqrt(x), lambda xp, x, y, g: g * 0.5 / y)
rsqrt = _unary('rsqrt', lambda xp, x: 1.0 / xp.sqrt(x), lambda xp, x, y, g: g * -0.5 * y / x)
square = _unary('square', lambda xp, x: xp.square(x), lambda xp, x, y, g: g * 2 * x,
                float_only=False)
abs = _unary('abs', lambda xp, x: xp.abs(x), lambda xp, x, y, g: g * xp.sign(x),
             float_only=False)
sign = _unary('sign', lambda xp, x: xp.sign(x), lambda xp, x, y, g: xp.zeros_like(g),
              float_only=False)
reciprocal = _unary('reciprocal', lambda xp, x: 1.0 / x, lambda xp, x, y, g: -g * y * y)
sin = _unary('sin', lambda xp, x: xp.sin(x), lambda xp, x, y, g: g * xp.cos(x))
cos = _unary('cos', lambda xp, x: xp.cos(x), lambda xp, x, y, g: -g * xp.sin(x))
log1p = _unary('log1p', lambda xp, x: xp.log1p(x), lambda xp, x, y, g: g / (1 + x))
expm1 = _unary('expm1', lambda xp, x: xp.expm1(x), lambda xp, x, y, g: g * (y + 1))
floor = _unary('floor', lambda xp, x: xp.floor(x), lambda xp, x, y, g: xp.zeros_like(g))
ceil = _unary('ceil', lambda xp, x: xp.ceil(x), lambda xp, x, y, g: xp.zeros_like(g))
round = _unary('round', lambda xp, x: xp.round(x), lambda xp, x, y, g: xp.zeros_like(g))
sigmoid = _unary('sigmoid', _sigmoid, lambda xp, x, y, g: g * y * (1 - y))
tanh = _unary('tanh', lambda xp, x: xp.tanh(x), lambda xp, x, y, g: g * (1 - y * y))
relu = _unary('relu', lambda xp, x: relu_values(xp, x),
              lambda xp, x, y, g: relu_grad(xp, g, x), float_only=False)
erf = _unary('erf', _erf_fn,
             lambda xp, x, y, g: g * (2.0 / np.sqrt(np.pi)) * xp.exp(-x * x))


def astype(x, dtype):
    """Cast; the gradient is cast back to the input dtype."""
    dtype = np.dtype(dtype)
    y = x._data.astype(dtype)
    if not _tracked1(x) or dtype.kind != 'f':
        return _wrap(y, x._ctx)
    src = x.dtype
    return record_op(lambda g: (g.astype(src),), (x,), y, x._ctx, name='astype')


def stop_gradient(x):
    """The same values with no gradient flowing back (MXNet's BlockGrad)."""
    return _wrap(x._data, x._ctx)


def identity(x):
    y = x._data
    if not _tracked1(x):
        return _wrap(y, x._ctx)
    return record_op(lambda g: (g,), (x,), y, x._ctx, name='identity')


def copy_to_context(x, ctx):
    """Copy to another device; the gradient is copied back."""
    from ..backend import to_device
    y = to_device(x._data, ctx, copy=True)
    if not _tracked1(x):
        return _wrap(y, ctx)
    src = x._ctx
    return record_op(lambda g: (to_device(g, src, copy=True),), (x,), y, ctx,
                     name='copy_to_context')
