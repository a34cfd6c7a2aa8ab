"""Array creation: zeros, ones, full, empty, arange, *_like. Each allocates with its device
current (``xpnet.ops`` wraps them with ``on_device``; ``_make`` does it for direct callers)."""
import numpy as np

from ..backend import Context, current_context
from ..ndarray import NDArray, _wrap

__all__ = ['zeros', 'ones', 'full', 'empty', 'zeros_like', 'ones_like', 'full_like', 'arange',
           'eye', 'linspace']


def _ctx(ctx):
    return Context(ctx) if ctx is not None else current_context()


def _shape(shape):
    return (int(shape),) if isinstance(shape, (int, np.integer)) else tuple(int(s) for s in shape)


def _make(fn, shape, ctx, dtype, *args):
    c = _ctx(ctx)
    xp = c.xp
    with c.use():
        return _wrap(getattr(xp, fn)(_shape(shape), *args, dtype=np.dtype(dtype or np.float32)),
                     c)


def zeros(shape, ctx=None, dtype=None, **kwargs):
    """An array of zeros (float32 by default) on ``ctx`` (the current context by default)."""
    return _make('zeros', shape, ctx, dtype)


def ones(shape, ctx=None, dtype=None, **kwargs):
    """An array of ones."""
    return _make('ones', shape, ctx, dtype)


def empty(shape, ctx=None, dtype=None, **kwargs):
    """An uninitialized array."""
    return _make('empty', shape, ctx, dtype)


def full(shape, val, ctx=None, dtype=None, **kwargs):
    """An array filled with ``val``."""
    return _make('full', shape, ctx, dtype, val)


def zeros_like(data, **kwargs):
    return _wrap(data.xp.zeros_like(data.data), data.context)


def ones_like(data, **kwargs):
    return _wrap(data.xp.ones_like(data.data), data.context)


def full_like(data, fill_value, **kwargs):
    return _wrap(data.xp.full_like(data.data, fill_value), data.context)


def arange(start, stop=None, step=1.0, repeat=1, ctx=None, dtype=None, **kwargs):
    """Evenly spaced values in [start, stop) (float32 by default, as MXNet)."""
    c = _ctx(ctx)
    xp = c.xp
    if stop is None:
        start, stop = 0, start
    out = xp.arange(start, stop, step, dtype=np.dtype(dtype or np.float32))
    if repeat != 1:
        out = xp.repeat(out, repeat)
    return _wrap(out, c)


def eye(N, M=0, k=0, ctx=None, dtype=None, **kwargs):
    c = _ctx(ctx)
    return _wrap(c.xp.eye(N, M or None, k, dtype=np.dtype(dtype or np.float32)), c)


def linspace(start, stop, num, endpoint=True, ctx=None, dtype=None):
    c = _ctx(ctx)
    return _wrap(c.xp.linspace(start, stop, num, endpoint=endpoint,
                               dtype=np.dtype(dtype or np.float32)), c)


NDArray  # noqa: B018  (imported for type references in docs)
