"""Indexing ops: ``x[key]``, take, pick, one_hot, embedding lookup."""
import numpy as np

from ..backend import is_array, scatter_add, to_device
from ..backend.checks import device_assert
from ..ndarray import NDArray, RowSparseGrad
from ._base import _wrap, norm_axis, record_op, tracked

__all__ = ['getitem', 'device_index', 'take', 'pick', 'one_hot', 'embedding', 'take_along_axis']


def _index_array(value, x):
    """An index array on ``x``'s device: float indices become int64, bools stay masks."""
    if isinstance(value, NDArray):
        d = value._data
        if value._ctx != x._ctx:
            d = to_device(d, x._ctx)
    else:
        d = to_device(value, x._ctx)
    if d.dtype.kind == 'f':
        d = d.astype(np.int64)
    return d


def device_index(x, key):
    """Convert an indexing key (ints, slices, NDArrays, lists, host arrays) for ``x``'s device.
    Returns the key and whether it uses advanced (array) indexing."""
    return _convert_key(x, key)[0]


def _convert_key(x, key):
    if not isinstance(key, tuple):
        key = (key,)
    out, advanced = [], False
    for k in key:
        if isinstance(k, NDArray) or is_array(k) or isinstance(k, list):
            out.append(_index_array(k, x))
            advanced = True
        elif isinstance(k, np.integer):
            out.append(int(k))
        else:
            out.append(k)
    return tuple(out), advanced


def getitem(x, key):
    """``x[key]`` with basic and integer-array indexing; differentiable (repeated indices
    accumulate their gradients)."""
    dkey, advanced = _convert_key(x, key)
    try:
        y = x._data[dkey]
    except IndexError as err:
        raise IndexError(f'index {key!r} is out of bounds for an array of shape {x.shape}: '
                         f'{err}') from None
    if isinstance(y, np.generic):
        y = x.xp.asarray(y)
    if not tracked(x):
        return _wrap(y, x._ctx)
    xp = x.xp
    shape, dtype = x.shape, x.dtype

    def backward(g):
        out = xp.zeros(shape, dtype=dtype)
        if advanced:
            scatter_add(xp, out, dkey, g)
        else:
            out[dkey] = g
        return (out,)
    return record_op(backward, (x,), y, x._ctx, name='getitem')


def take(a, indices, axis=0, mode='clip'):
    """Elements of ``a`` at ``indices`` along ``axis``; ``mode`` 'clip' or 'wrap' handles
    out-of-range indices (MXNet's default is 'clip'), 'raise' refuses them."""
    xp = a.xp
    axis = norm_axis(axis, a.ndim, 'take')
    idx = _index_array(indices, a)
    n = a.shape[axis]
    if mode == 'clip':
        idx = xp.clip(idx, 0, n - 1)
    elif mode == 'wrap':
        idx = idx % n
    elif mode == 'raise':
        if xp is np:
            if idx.size and (int(idx.min()) < -n or int(idx.max()) >= n):
                raise IndexError(f'take: index out of range for axis {axis} of size {n}')
        elif idx.size:      # on a device: raised at the next read-back (no sync here)
            device_assert(((idx < -n) | (idx >= n)).any(),
                          f'take: index out of range for axis {axis} of size {n} (found '
                          'when data was read back)', IndexError)
            idx = idx % n                  # what CuPy's take reads; valid indices unchanged
    else:
        raise ValueError(f"take: mode must be 'clip', 'wrap' or 'raise', got {mode!r}")
    y = xp.take(a._data, idx, axis=axis)
    if not tracked(a):
        return _wrap(y, a._ctx)
    shape, dtype = a.shape, a.dtype

    def backward(g):
        out = xp.zeros(shape, dtype=dtype)
        key = (slice(None),) * axis + (idx,)
        scatter_add(xp, out, key, g)
        return (out,)
    return record_op(backward, (a,), y, a._ctx, name='take')


def take_along_axis(a, indices, axis):
    """``a`` gathered with ``indices`` of the same rank along ``axis`` (differentiable)."""
    xp = a.xp
    idx = _index_array(indices, a)
    y = xp.take_along_axis(a._data, idx, axis=axis)
    if not tracked(a):
        return _wrap(y, a._ctx)
    shape, dtype = a.shape, a.dtype
    ax = norm_axis(axis, a.ndim)

    def backward(g):
        out = xp.zeros(shape, dtype=dtype)
        nd = idx.ndim      # open grids (CuPy's indices() has no sparse=True)
        grid = [xp.arange(n).reshape((1,) * i + (n,) + (1,) * (nd - i - 1))
                for i, n in enumerate(idx.shape)]
        grid[ax] = idx
        scatter_add(xp, out, tuple(grid), g)
        return (out,)
    return record_op(backward, (a,), y, a._ctx, name='take_along_axis')


def pick(data, index, axis=-1, keepdims=False, mode='clip'):
    """``data[..., index[...], ...]`` along ``axis``: one element per position of ``index``
    (e.g. the score of each sample's label). Out-of-range indices are clipped or wrapped."""
    xp = data.xp
    axis = norm_axis(axis, data.ndim, 'pick')
    n = data.shape[axis]
    idx = _index_array(index, data).astype(np.int64)
    idx = xp.clip(idx, 0, n - 1) if mode == 'clip' else idx % n
    expected = data.shape[:axis] + data.shape[axis + 1:]
    if idx.shape != expected:
        if idx.shape == data.shape[:axis] + (1,) + data.shape[axis + 1:]:
            idx = idx.reshape(expected)
        else:
            raise ValueError(f'pick: index shape {idx.shape} does not match data shape '
                             f'{data.shape} without axis {axis} ({expected})')
    idx_e = xp.expand_dims(idx, axis)
    y = xp.take_along_axis(data._data, idx_e, axis=axis)
    if not keepdims:
        y = y.reshape(expected)
    if not tracked(data):
        return _wrap(y, data._ctx)
    shape = [1] * data.ndim
    shape[axis] = n

    def backward(g):
        onehot = xp.arange(n).reshape(shape) == idx_e
        ge = g if keepdims else xp.expand_dims(g, axis)
        return ((onehot * ge).astype(data.dtype),)
    return record_op(backward, (data,), y, data._ctx, name='pick')


def one_hot(indices, depth, on_value=1.0, off_value=0.0, dtype='float32'):
    """One-hot encoding along a new last axis; out-of-range indices give all ``off_value``."""
    if not isinstance(indices, NDArray):
        from ..ndarray import array
        indices = array(indices)
    xp = indices.xp
    idx = _index_array(indices, indices)
    hot = xp.expand_dims(idx, -1) == xp.arange(depth)
    out = xp.where(hot, on_value, off_value).astype(np.dtype(dtype))
    return _wrap(out, indices._ctx)


def embedding(data, weight, sparse_grad=False):
    """Rows of ``weight`` (input_dim, output_dim) at the integer positions in ``data``.

    With ``sparse_grad`` the weight's gradient is a :class:`RowSparseGrad` holding only
    the looked-up rows, so no dense (input_dim, output_dim) array is built per step.
    """
    xp = weight.xp
    idx = _index_array(data, weight)
    if idx.dtype.kind not in 'iu':
        idx = idx.astype(np.int64)
    vocab = weight.shape[0]
    if xp is not np:            # on a device: clip always (one kernel, nothing read back)
        idx = xp.clip(idx, 0, vocab - 1)
    elif idx.size and (int(idx.min()) < 0 or int(idx.max()) >= vocab):
        # MXNet clips; we clip too, but never silently read out of range.
        idx = xp.clip(idx, 0, vocab - 1)
    y = weight._data[idx]
    if not tracked(weight):
        return _wrap(y, weight._ctx)
    wshape, dim = weight.shape, weight.shape[1]
    flat = idx.reshape(-1)

    def backward(g):
        g2 = g.reshape(-1, dim)
        if sparse_grad:
            return (None, RowSparseGrad(flat, g2, wshape))
        out = xp.zeros(wshape, dtype=g.dtype)
        scatter_add(xp, out, flat, g2)
        return (None, out)
    return record_op(backward, (data if isinstance(data, NDArray) else None, weight), y,
                     weight._ctx, name='embedding')
