"""``xpnet.test_utils``: the helpers of ``mxnet.test_utils`` that Gluon 1.x tests use.

``assert_almost_equal`` and ``almost_equal`` take NDArrays, NumPy arrays or numbers, with
MXNet's default tolerances per dtype (float32: ``rtol=1e-4, atol=1e-3``; float64:
``rtol=1e-5, atol=1e-20``; integers: exact), and report the worst element on failure.

Example::

    from xpnet.test_utils import assert_almost_equal
    assert_almost_equal(net(x), expected, rtol=1e-5, atol=1e-6)
"""
import numbers

import numpy as np

from .backend import Context, current_context
from .backend import _default_ctx
from .ndarray import NDArray, array

__all__ = ['default_context', 'set_default_context', 'default_rtols', 'default_atols',
           'almost_equal', 'assert_almost_equal', 'assert_allclose', 'same',
           'assert_exception', 'rand_shape_2d', 'rand_shape_3d', 'rand_shape_nd',
           'rand_ndarray']

_RTOL = {np.dtype(np.float16): 1e-2, np.dtype(np.float32): 1e-4, np.dtype(np.float64): 1e-5}
_ATOL = {np.dtype(np.float16): 1e-1, np.dtype(np.float32): 1e-3, np.dtype(np.float64): 1e-20}


def default_context():
    """The context tests run on (``cpu(0)`` unless :func:`set_default_context` changed it)."""
    return current_context()


def set_default_context(ctx):
    """Make ``ctx`` the default context of array creation (as MXNet's)."""
    _default_ctx[-1] = Context(ctx)


def default_rtols():
    """Default relative tolerance per dtype (0 for integer and boolean dtypes)."""
    return dict(_RTOL)


def default_atols():
    """Default absolute tolerance per dtype (0 for integer and boolean dtypes)."""
    return dict(_ATOL)


def _host(x):
    if isinstance(x, NDArray):
        return x.asnumpy()
    if isinstance(x, numbers.Number):
        return np.asarray(x)
    return np.asarray(x)


def _tolerance(arrays, tol, table):
    if tol is not None:
        return tol
    return max(table.get(a.dtype, 0.0) for a in arrays)


def almost_equal(a, b, rtol=None, atol=None, equal_nan=False, use_broadcast=True):
    """True if ``a`` and ``b`` agree within ``atol + rtol * |b|`` everywhere."""
    a, b = _host(a), _host(b)
    if not use_broadcast and a.shape != b.shape:
        return False
    return bool(np.allclose(a, b, rtol=_tolerance((a, b), rtol, _RTOL),
                            atol=_tolerance((a, b), atol, _ATOL), equal_nan=equal_nan))


def assert_almost_equal(a, b, rtol=None, atol=None, names=('a', 'b'), equal_nan=False,
                        use_broadcast=True, mismatches=(10, 10)):
    """Raise ``AssertionError`` naming the worst element unless ``a`` and ``b`` agree within
    ``atol + rtol * |b|`` (MXNet's defaults per dtype when None)."""
    a, b = _host(a), _host(b)
    if not use_broadcast and a.shape != b.shape:
        raise AssertionError(f'{names[0]}.shape = {a.shape} and {names[1]}.shape = {b.shape} '
                             'are not equal')
    rtol = _tolerance((a, b), rtol, _RTOL)
    atol = _tolerance((a, b), atol, _ATOL)
    if a.dtype == np.bool_ and b.dtype == np.bool_:
        np.testing.assert_equal(a, b)
        return
    if np.allclose(a, b, rtol=rtol, atol=atol, equal_nan=equal_nan):
        return
    a64, b64 = np.broadcast_arrays(a.astype(np.float64), b.astype(np.float64))
    with np.errstate(invalid='ignore', divide='ignore'):
        excess = np.abs(a64 - b64) / (atol + rtol * np.abs(b64))
    excess = np.where(np.isnan(excess), np.inf, excess)
    index = np.unravel_index(int(np.argmax(excess)), excess.shape) if excess.ndim else ()
    bad = int((excess > 1).sum())
    raise AssertionError(
        f'Error {float(excess[index]):f} exceeds tolerance rtol={rtol:e}, atol={atol:e} '
        f'(mismatch {100.0 * bad / max(a64.size, 1):f}%). Location of maximum error: '
        f'{index}, {names[0]}={a64[index]!r}, {names[1]}={b64[index]!r}')


def assert_allclose(a, b, rtol=1e-07, atol=0, equal_nan=True):
    """:func:`assert_almost_equal` with NumPy's ``assert_allclose`` defaults."""
    assert_almost_equal(a, b, rtol=rtol, atol=atol, equal_nan=equal_nan)


def same(a, b):
    """True if ``a`` and ``b`` are exactly equal (same shape)."""
    return bool(np.array_equal(_host(a), _host(b)))


def assert_exception(f, exception_type, *args, **kwargs):
    """Assert that ``f(*args, **kwargs)`` raises ``exception_type``."""
    try:
        f(*args, **kwargs)
    except exception_type:
        return
    raise AssertionError(f'{getattr(f, "__name__", f)} did not raise '
                         f'{exception_type.__name__}')


def rand_shape_2d(dim0=10, dim1=10, allow_zero_size=False):
    """A random 2-d shape with sizes in ``[1, dim]`` (``[0, dim]`` if zero sizes allowed)."""
    return rand_shape_nd(2, (dim0, dim1), allow_zero_size)


def rand_shape_3d(dim0=10, dim1=10, dim2=10, allow_zero_size=False):
    """A random 3-d shape (see :func:`rand_shape_2d`)."""
    return rand_shape_nd(3, (dim0, dim1, dim2), allow_zero_size)


def rand_shape_nd(num_dim, dim=10, allow_zero_size=False):
    """A random ``num_dim``-d shape; ``dim`` bounds every size (an int or one per axis)."""
    low = 0 if allow_zero_size else 1
    dims = (dim,) * num_dim if isinstance(dim, numbers.Integral) else tuple(dim)
    return tuple(int(np.random.randint(low, d + 1)) for d in dims)


def rand_ndarray(shape, stype='default', density=None, dtype=None, ctx=None, **kwargs):
    """A dense NDArray of uniform [0, 1) values (only ``stype='default'``: xpnet has no
    sparse storage types)."""
    if stype != 'default':
        raise NotImplementedError(f'rand_ndarray: stype {stype!r} is not supported (xpnet '
                                  "arrays are dense; use stype='default')")
    values = np.random.uniform(size=shape).astype(dtype or np.float32)
    return array(values, ctx=ctx or current_context(), dtype=values.dtype)
