"""xpnet's random number generation: one seedable stream for weight init, dropout and shuffling.

``xpnet.random.seed(n)`` makes everything that draws from it reproducible. Draws are made
on the host with NumPy's PCG64 generator and moved to the array's device, so the same seed
gives the same numbers on every device (GPU users who prefer on-device generation can seed
CuPy themselves). ``get_state()``/``set_state()`` capture the stream for checkpoints.

Example::

    xpnet.random.seed(42)
    x = xpnet.nd.random.uniform(-1, 1, shape=(2, 3))
"""
import numpy as np

from .backend import current_context, to_device, Context

__all__ = ['seed', 'get_state', 'set_state', 'generator', 'uniform', 'normal', 'randint',
           'uniform_array', 'normal_array', 'shuffle', 'permutation']

_gen = [np.random.Generator(np.random.PCG64())]


def seed(seed_state, ctx='all'):
    """Seed the global stream (``ctx`` is accepted for MXNet compatibility)."""
    _gen[0] = np.random.Generator(np.random.PCG64(int(seed_state)))


def generator():
    """The host ``numpy.random.Generator`` behind the global stream."""
    return _gen[0]


def get_state():
    """A JSON-serializable snapshot of the global stream."""
    return _gen[0].bit_generator.state


def set_state(state):
    """Restore a snapshot from :func:`get_state`."""
    bg = np.random.PCG64()
    bg.state = state
    _gen[0] = np.random.Generator(bg)


def _dtype(dtype):
    return np.dtype(np.float32 if dtype is None else dtype)


def uniform_array(shape, ctx, low=0.0, high=1.0, dtype=np.float32):
    """Uniform [low, high) samples as an array of ``ctx``'s array module."""
    dtype = _dtype(dtype)
    g = _gen[0]
    if dtype in (np.float32, np.float64):
        u = g.random(shape, dtype=dtype)
        if low != 0.0 or high != 1.0:
            u *= dtype.type(high - low)
            u += dtype.type(low)
    else:
        u = g.uniform(low, high, shape).astype(dtype)
    return to_device(u, ctx)


def normal_array(shape, ctx, loc=0.0, scale=1.0, dtype=np.float32):
    """Normal samples as an array of ``ctx``'s array module."""
    dtype = _dtype(dtype)
    g = _gen[0]
    if dtype in (np.float32, np.float64):
        z = g.standard_normal(shape, dtype=dtype)
        if scale != 1.0:
            z *= dtype.type(scale)
        if loc != 0.0:
            z += dtype.type(loc)
    else:
        z = g.normal(loc, scale, shape).astype(dtype)
    return to_device(z, ctx)


def permutation(n):
    """A host permutation of range(n) from the global stream (used for shuffling)."""
    return _gen[0].permutation(n)


def _shape(shape):
    if shape is None:
        return (1,)
    return (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)


def _ctx(ctx):
    return Context(ctx) if ctx is not None else current_context()


def uniform(low=0.0, high=1.0, shape=None, dtype=None, ctx=None, out=None):
    """NDArray of uniform samples in [low, high)."""
    from .ndarray import _wrap
    c = _ctx(ctx)
    res = _wrap(uniform_array(_shape(shape), c, low, high, dtype), c)
    return _into(res, out)


def normal(loc=0.0, scale=1.0, shape=None, dtype=None, ctx=None, out=None):
    """NDArray of normal samples."""
    from .ndarray import _wrap
    c = _ctx(ctx)
    res = _wrap(normal_array(_shape(shape), c, loc, scale, dtype), c)
    return _into(res, out)


def randint(low, high, shape=None, dtype='int32', ctx=None, out=None):
    """NDArray of integers uniform in [low, high)."""
    from .ndarray import _wrap
    c = _ctx(ctx)
    data = _gen[0].integers(low, high, size=_shape(shape)).astype(dtype)
    return _into(_wrap(to_device(data, c), c), out)


def shuffle(data):
    """A copy of ``data`` (NDArray) with its first axis shuffled."""
    from .ndarray import _wrap
    perm = to_device(permutation(data.shape[0]), data.context)
    return _wrap(data.data[perm], data.context)


def _into(res, out):
    if out is None:
        return res
    out.data[...] = res.data
    return out
