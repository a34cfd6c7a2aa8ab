"""Helpers shared by the op modules: device placement, operand coercion, broadcasting,
gradient reduction."""
import functools
import numbers

import numpy as np

from ..autograd import _state, needs_grad, record_op, record_multi  # noqa: F401 (re-exported)
from ..backend import Context, is_array, run_on, to_device
from ..ndarray import NDArray, _wrap, array  # noqa: F401

_FLOAT32 = np.dtype(np.float32)


def on_device(fn):
    """Run the op ``fn`` under its data's device (CuPy launches kernels on the thread's
    current device, whatever device the arrays live on).

    The device is that of the first argument when it is an NDArray, else that of the first
    NDArray (or leading list of NDArrays) among the arguments, else the ``ctx`` argument;
    with none of these, ``fn`` just runs. For a CPU array this costs an extra call frame and
    two attribute reads (about 0.1-0.3 us, measured with benchmarks/bench_overhead.py's
    chain); for a device array one ``getDevice``, and a switch there and back only when
    another device is current. ``xpnet.ops`` applies it to every public op.
    """
    @functools.wraps(fn)
    def op(*args, **kwargs):
        try:
            ctx = args[0]._ctx          # the common case: an NDArray first
        except (IndexError, AttributeError):
            ctx = _call_context(args, kwargs)
            if ctx is None:
                return fn(*args, **kwargs)
        if ctx._rt is None:
            return fn(*args, **kwargs)
        return run_on(ctx, fn, *args, **kwargs)
    return op


def _call_context(args, kwargs):
    """The device an op call works on when its first argument is not an NDArray."""
    ctx = kwargs.get('ctx')
    if ctx is not None:
        return Context(ctx)
    for a in args:
        if isinstance(a, NDArray):
            return a._ctx
        if isinstance(a, Context):
            return a
        if isinstance(a, (list, tuple)) and a and isinstance(a[0], NDArray):
            return a[0]._ctx
    return None


def tracked(x):
    """True if ``x`` (an NDArray) would receive a gradient in the current recording."""
    return _state.recording and (x._node is not None or x._grad is not None)


def float_data(xd):
    """``xd`` itself when it is a float array, else as float32 (ops that need floats)."""
    return xd if xd.dtype.kind == 'f' else xd.astype(np.float32)


def check_nd(x, op):
    if not isinstance(x, NDArray):
        raise TypeError(f'{op}: expected an NDArray, got {type(x).__name__}')
    return x


def same_ctx(a, b, op):
    if a._ctx is not b._ctx and a._ctx != b._ctx:
        raise ValueError(f'{op}: arrays live on different devices ({a._ctx} and {b._ctx}); '
                         'move one with .as_in_context()')


def to_nd(value, like, op='op'):
    """``value`` as an NDArray on ``like``'s device (floats take ``like``'s float dtype)."""
    if isinstance(value, NDArray):
        same_ctx(value, like, op)
        return value
    if is_array(value) or isinstance(value, (list, tuple)):
        kind = value.dtype.kind if is_array(value) else np.asarray(value).dtype.kind
        dtype = like.dtype if kind == 'f' and like.dtype.kind == 'f' else None
        if dtype is None and kind == 'f':
            dtype = _FLOAT32
        return _wrap(to_device(value, like._ctx, dtype=dtype), like._ctx)
    raise TypeError(f'{op}: unsupported operand type {type(value).__name__}')


def scalar(value):
    """A Python scalar from a Python/NumPy scalar (NumPy scalars would upcast float32)."""
    if isinstance(value, np.generic):
        return value.item()
    return value


def is_scalar(value):
    return isinstance(value, (numbers.Number, np.generic)) and not isinstance(value, NDArray)


def promote(a, b):
    """Data of two NDArrays with int/float mixing resolved to the float dtype (PyTorch's rule,
    which keeps float32 float32 where NumPy would give float64)."""
    ad, bd = a._data, b._data
    if ad.dtype != bd.dtype:
        ka, kb = ad.dtype.kind, bd.dtype.kind
        if ka == 'f' and kb != 'f':
            bd = bd.astype(ad.dtype)
        elif kb == 'f' and ka != 'f':
            ad = ad.astype(bd.dtype)
    return ad, bd


def promote_scalar(a, s):
    """Data of ``a`` and scalar ``s``; an integer array meeting a float scalar becomes float32."""
    ad = a._data
    if ad.dtype.kind in 'iub' and isinstance(s, float):
        ad = ad.astype(_FLOAT32)
    return ad


def unbroadcast(g, shape):
    """Sum ``g`` down to ``shape`` (the reverse of broadcasting)."""
    if g.shape == shape:
        return g
    nd = g.ndim - len(shape)
    axes = tuple(range(nd)) + tuple(i + nd for i, s in enumerate(shape)
                                    if s == 1 and g.shape[i + nd] != 1)
    if axes:
        g = g.sum(axis=axes, keepdims=True)
    if nd:
        g = g.reshape(shape)
    return g


def norm_axis(axis, ndim, op='op'):
    """Normalize an int axis into [0, ndim)."""
    if not -ndim <= axis < ndim:
        raise ValueError(f'{op}: axis {axis} is out of range for an array of {ndim} dimensions')
    return axis % ndim


def norm_axes(axis, ndim, exclude=False, op='op'):
    """Normalize an axis argument (None, int or tuple) to a sorted tuple; ``exclude``
    takes the complement (MXNet's reduce ``exclude=True``)."""
    if axis is None:
        axes = tuple(range(ndim))
        return () if exclude else axes
    if isinstance(axis, numbers.Integral):
        axis = (axis,)
    axes = tuple(sorted({norm_axis(int(a), ndim, op) for a in axis}))
    if exclude:
        axes = tuple(i for i in range(ndim) if i not in axes)
    return axes


def int_tuple(value, nd, what, owner, minimum=None):
    """An int or a sequence of ints as a tuple of ``nd`` ints (a length-1 sequence is
    repeated), each ``>= minimum`` if given; a ``ValueError`` naming ``owner`` and ``what``
    otherwise. Used for kernel sizes, strides, paddings and dilations everywhere."""
    if isinstance(value, numbers.Integral):
        out = (int(value),) * nd
    else:
        try:
            out = tuple(int(v) for v in value)
        except TypeError:
            raise ValueError(f'{owner}: {what} must be an int or a tuple/list of {nd} ints, got '
                             f'{value!r}') from None
        if len(out) == 1 and nd > 1:
            out = out * nd
    if len(out) != nd:
        raise ValueError(f'{owner}: {what} must be an int or a tuple/list of {nd} ints, got '
                         f'{value!r}')
    if minimum is not None and any(v < minimum for v in out):
        raise ValueError(f'{owner}: every {what} must be >= {minimum}, got {value!r}')
    return out
