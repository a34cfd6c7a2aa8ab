"""xpnet's random number generation: one seedable stream for weight init, dropout and shuffling.

``xpnet.random.seed(n)`` makes everything that draws from it reproducible. Draws are made
on the host with NumPy's PCG64 generator and moved to the array's device, so the same seed
gives the same numbers on every device. ``get_state()``/``set_state()`` capture the stream
for checkpoints.

Dropout on a device draws its masks on the device instead (nothing is copied up per
step): a counter-based generator (Philox4x32-10) whose key comes from the seed and whose
counter is part of this stream's state (:func:`device_stream`), so device masks are as
reproducible and as checkpointable as host draws, and the simulated device gives the
same masks as a GPU. The CPU keeps drawing its masks from PCG64.

This module is also ``nd.random`` and ``mx.random`` of Gluon 1.x code: ``uniform``,
``normal``, ``randn``, ``randint``, ``poisson``, ``exponential``, ``gamma``,
``negative_binomial``, ``generalized_negative_binomial``, ``multinomial`` and ``shuffle``
take MXNet's arguments. Distribution parameters may be NDArrays: then every element draws
``shape`` samples with its own parameters (output shape ``param.shape + shape``).

Example::

    xpnet.random.seed(42)
    x = xpnet.nd.random.uniform(-1, 1, shape=(2, 3))
"""
import numpy as np

from .backend import current_context, to_device, Context

__all__ = ['seed', 'get_state', 'set_state', 'generator', 'device_stream', 'uniform',
           'normal', 'randint',
           'uniform_array', 'normal_array', 'shuffle', 'permutation', 'randn', 'poisson',
           'exponential', 'gamma', 'negative_binomial', 'generalized_negative_binomial',
           'multinomial']

_gen = [np.random.Generator(np.random.PCG64())]
_DEVICE_KEY = 'xpnet_device'


def _device_key(entropy):
    """A 64-bit Philox key from a seed (or any entropy), through NumPy's SeedSequence."""
    words = np.random.SeedSequence(entropy).generate_state(2, np.uint32)
    return int(words[0]) | (int(words[1]) << 32)


_device = {'key': _device_key(None), 'counter': 0}


def seed(seed_state, ctx='all'):
    """Seed the global stream (``ctx`` is accepted for MXNet compatibility)."""
    _gen[0] = np.random.Generator(np.random.PCG64(int(seed_state)))
    _device['key'], _device['counter'] = _device_key(int(seed_state)), 0


def generator():
    """The host ``numpy.random.Generator`` behind the global stream."""
    return _gen[0]


def device_stream(nblocks):
    """``(key, counter)`` for ``nblocks`` blocks of four Philox words drawn on a device
    (dropout masks), and advance the stream past them. Host bookkeeping only."""
    key, base = _device['key'], _device['counter']
    _device['counter'] = base + int(nblocks)
    return key, base


def get_state():
    """A JSON-serializable snapshot of the global stream (the host generator's state and
    the device stream's key and counter)."""
    state = dict(_gen[0].bit_generator.state)
    state[_DEVICE_KEY] = dict(_device)
    return state


def set_state(state):
    """Restore a snapshot from :func:`get_state`. A snapshot without the device stream
    (written by an older xpnet) restarts it from a key derived from the host state."""
    state = dict(state)
    device = state.pop(_DEVICE_KEY, None)
    bg = np.random.PCG64()
    bg.state = state
    _gen[0] = np.random.Generator(bg)
    if isinstance(device, dict) and 'key' in device and 'counter' in device:
        _device['key'], _device['counter'] = int(device['key']), int(device['counter'])
    else:
        _device['key'], _device['counter'] = _device_key(int(state['state']['state'])), 0


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


def uniform(low=0.0, high=1.0, shape=None, dtype=None, ctx=None, out=None, **kwargs):
    """NDArray of uniform samples in [low, high) (``low``/``high`` may be NDArrays)."""
    if _is_nd(low) or _is_nd(high):
        return _sample(lambda g, lo, hi, size: g.uniform(lo, hi, size), (low, high), shape,
                       dtype, ctx, out)
    from .ndarray import _wrap
    c = _ctx(ctx)
    res = _wrap(uniform_array(_shape(shape), c, low, high, dtype), c)
    return _into(res, out)


def normal(loc=0.0, scale=1.0, shape=None, dtype=None, ctx=None, out=None, **kwargs):
    """NDArray of normal samples (``loc``/``scale`` may be NDArrays)."""
    if _is_nd(loc) or _is_nd(scale):
        return _sample(lambda g, mu, sd, size: g.normal(mu, sd, size), (loc, scale), shape,
                       dtype, ctx, out)
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
    with data.context.use():
        return _wrap(data.data[perm], data.context)


def _into(res, out):
    if out is None:
        return res
    if out.shape != res.shape:
        raise ValueError(f'out has shape {out.shape} but the result has shape {res.shape}')
    value = to_device(res.data, out.context, dtype=out.dtype)
    with out.context.use():
        out.data[...] = value
    return out


# ---- MXNet's other distributions (``nd.random.*``) ----------------------------------------

def _is_nd(value):
    from .ndarray import NDArray
    return isinstance(value, NDArray)


def _sample(draw, params, shape, dtype, ctx, out):
    """Samples of ``draw(generator, *host params, size)``: scalar parameters give ``shape``;
    NDArray parameters (all of one shape) give ``param.shape + shape``, on their device."""
    from .backend import to_host
    from .ndarray import _wrap
    arrays = [p for p in params if _is_nd(p)]
    extra = () if shape is None else _shape(shape)
    if arrays:
        pshape = arrays[0].shape
        if any(a.shape != pshape for a in arrays):
            raise ValueError('random: NDArray parameters must have the same shape, got '
                             f'{[a.shape for a in arrays]}')
        c = arrays[0].context if ctx is None else Context(ctx)
        host = [to_host(p.data).reshape(pshape + (1,) * len(extra)) if _is_nd(p) else p
                for p in params]
        size = pshape + extra
    else:
        c, host, size = _ctx(ctx), list(params), _shape(shape)
    values = np.asarray(draw(_gen[0], *host, size)).astype(_dtype(dtype))
    return _into(_wrap(to_device(values, c), c), out)


def randn(*shape, loc=0.0, scale=1.0, dtype=None, ctx=None, out=None, **kwargs):
    """Normal samples of shape ``shape`` given as separate ints: ``randn(2, 3)``."""
    return normal(loc, scale, shape or None, dtype, ctx, out)


def poisson(lam=1.0, shape=None, dtype=None, ctx=None, out=None, **kwargs):
    """Poisson samples with rate ``lam`` (float32 by default, as MXNet)."""
    return _sample(lambda g, lm, size: g.poisson(lm, size), (lam,), shape, dtype, ctx, out)


def exponential(scale=1.0, shape=None, dtype=None, ctx=None, out=None, **kwargs):
    """Exponential samples with ``scale`` = 1/rate."""
    return _sample(lambda g, sc, size: g.exponential(sc, size), (scale,), shape, dtype, ctx,
                   out)


def gamma(alpha=1.0, beta=1.0, shape=None, dtype=None, ctx=None, out=None, **kwargs):
    """Gamma samples with shape ``alpha`` and scale ``beta``."""
    return _sample(lambda g, a, b, size: g.gamma(a, b, size), (alpha, beta), shape, dtype,
                   ctx, out)


def negative_binomial(k=1, p=1, shape=None, dtype=None, ctx=None, out=None, **kwargs):
    """Negative binomial samples: failures before ``k`` successes of probability ``p``."""
    return _sample(lambda g, kk, pp, size: g.negative_binomial(kk, pp, size), (k, p), shape,
                   dtype, ctx, out)


def generalized_negative_binomial(mu=1, alpha=1, shape=None, dtype=None, ctx=None, out=None,
                                  **kwargs):
    """Negative binomial samples with mean ``mu`` and dispersion ``alpha`` (a Poisson
    whose rate is gamma distributed; ``alpha = 0`` is a plain Poisson)."""
    def draw(g, m, a, size):
        m, a = np.broadcast_arrays(np.asarray(m, np.float64), np.asarray(a, np.float64))
        rate = np.where(a > 0, g.gamma(np.where(a > 0, 1 / np.maximum(a, 1e-300), 1.0),
                                       np.broadcast_to(m * a, m.shape), size), m)
        return g.poisson(np.broadcast_to(rate, size))
    return _sample(draw, (mu, alpha), shape, dtype, ctx, out)


def multinomial(data, shape=None, get_prob=False, out=None, dtype='int32', **kwargs):
    """Class indices drawn from the distributions in the last axis of ``data``.

    Args:
        data: NDArray (..., K) of probabilities (each row sums to 1).
        shape: samples per distribution (None: one, no extra axis).
        get_prob: also return the log-probability of each sample.
        dtype: dtype of the indices.

    Returns:
        NDArray of shape ``data.shape[:-1] + shape`` (and its log-probabilities).
    """
    from .backend import to_host
    from .ndarray import _wrap
    probs = to_host(data.data).astype(np.float64)
    extra = () if shape is None else _shape(shape)
    rows = probs.reshape(-1, probs.shape[-1])
    count = int(np.prod(extra)) if extra else 1
    u = _gen[0].random((rows.shape[0], count))
    cdf = np.cumsum(rows, axis=1)
    cdf /= cdf[:, -1:]
    idx = np.minimum((u[:, :, None] >= cdf[:, None, :]).sum(axis=2), rows.shape[1] - 1)
    idx = idx.reshape(probs.shape[:-1] + extra)
    ctx = data.context
    res = _into(_wrap(to_device(idx.astype(dtype), ctx), ctx), out)
    if not get_prob:
        return res
    flat = rows[np.arange(rows.shape[0])[:, None], idx.reshape(rows.shape[0], count)]
    logp = np.log(flat).reshape(idx.shape).astype(data.dtype)
    return res, _wrap(to_device(logp, ctx), ctx)
