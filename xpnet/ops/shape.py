"""Shape manipulation: reshape (with MXNet's special codes), transpose, concat, stack, split..."""
import numpy as np

from ._base import _state, _wrap, norm_axis, record_multi, record_op, same_ctx, tracked

__all__ = ['reshape', 'infer_reshape', 'transpose', 'swapaxes', 'flatten', 'expand_dims',
           'squeeze', 'broadcast_to', 'flip', 'concat', 'stack', 'split', 'tile', 'repeat',
           'pad']


def infer_reshape(src, target, reverse=False):
    """Resolve MXNet's reshape codes: 0 copies a dimension, -1 infers one, -2 copies the
    rest, -3 merges two, -4 splits one into the next two values (one may be -1)."""
    target = tuple(int(t) for t in target)
    if not any(t <= 0 for t in target):
        return target
    if reverse:
        return tuple(reversed(infer_reshape(tuple(reversed(src)), tuple(reversed(target)))))
    out, i, j = [], 0, 0
    while j < len(target):
        t = target[j]
        if t > 0:
            out.append(t)
            i += 1
        elif t == 0:
            out.append(src[i])
            i += 1
        elif t == -1:
            out.append(-1)
            i += 1
        elif t == -2:
            out.extend(src[i:])
            i = len(src)
        elif t == -3:
            out.append(src[i] * src[i + 1])
            i += 2
        elif t == -4:
            a, b = target[j + 1], target[j + 2]
            if a == -1:
                a = src[i] // b
            if b == -1:
                b = src[i] // a
            out.extend([a, b])
            i += 1
            j += 2
        else:
            raise ValueError(f'reshape: invalid code {t} in shape {target}')
        j += 1
    if out.count(-1) > 1:
        raise ValueError(f'reshape: more than one -1 in {target}')
    if -1 in out:
        known = int(np.prod([d for d in out if d != -1]))
        total = int(np.prod(src))
        if known == 0 or total % known:
            raise ValueError(f'reshape: cannot reshape array of shape {src} into {target}')
        out[out.index(-1)] = total // known
    return tuple(out)


def reshape(x, shape, reverse=False):
    """Reshape (a view when possible); ``shape`` may use MXNet's codes 0/-1/-2/-3/-4."""
    src = x.shape
    new = infer_reshape(src, shape, reverse) if not isinstance(shape, int) else (shape,)
    try:
        y = x._data.reshape(new)
    except ValueError:
        raise ValueError(f'reshape: cannot reshape array of shape {src} into {tuple(shape)}') \
            from None
    if not tracked(x):
        return _wrap(y, x._ctx)
    return record_op(lambda g: (g.reshape(src),), (x,), y, x._ctx, name='reshape')


def transpose(x, axes=None):
    """Permute axes (reverse them by default)."""
    y = x._data.transpose(axes) if axes else x._data.T
    if not tracked(x):
        return _wrap(y, x._ctx)
    inv = tuple(np.argsort(axes)) if axes else None
    return record_op(lambda g: (g.transpose(inv) if inv else g.T,), (x,), y, x._ctx,
                     name='transpose')


def swapaxes(x, dim1, dim2):
    axes = list(range(x.ndim))
    axes[dim1], axes[dim2] = axes[dim2], axes[dim1]
    return transpose(x, tuple(axes))


def flatten(x):
    """Collapse all but the first axis: (N, ...) -> (N, prod(...))."""
    n = x.shape[0] if x.ndim else 1
    return reshape(x, (n, -1) if x.size else (n, 0))


def expand_dims(x, axis):
    nd = x.ndim + 1
    axis = norm_axis(axis, nd, 'expand_dims')
    shape = x.shape[:axis] + (1,) + x.shape[axis:]
    return reshape(x, shape)


def squeeze(x, axis=None):
    """Remove size-1 axes (all of them, or those in ``axis``)."""
    if axis is None:
        shape = tuple(s for s in x.shape if s != 1)
    else:
        axes = {norm_axis(a, x.ndim, 'squeeze') for a in
                ((axis,) if isinstance(axis, int) else axis)}
        for a in axes:
            if x.shape[a] != 1:
                raise ValueError(f'squeeze: axis {a} has size {x.shape[a]}, not 1')
        shape = tuple(s for i, s in enumerate(x.shape) if i not in axes)
    return reshape(x, shape)


def broadcast_to(x, shape):
    """Broadcast to ``shape`` (0 in ``shape`` keeps the input's size, as MXNet)."""
    shape = tuple(x.shape[i - (len(shape) - x.ndim)] if s == 0 else s
                  for i, s in enumerate(shape))
    y = x.xp.broadcast_to(x._data, shape)
    if not tracked(x):
        return _wrap(y, x._ctx)
    from ._base import unbroadcast
    src = x.shape
    return record_op(lambda g: (unbroadcast(g, src),), (x,), y, x._ctx, name='broadcast_to')


def flip(x, axis):
    """Reverse the order of elements along ``axis``."""
    xp = x.xp
    y = xp.flip(x._data, axis)
    if not tracked(x):
        return _wrap(y, x._ctx)
    return record_op(lambda g: (xp.flip(g, axis),), (x,), y, x._ctx, name='flip')


def concat(*arrays, dim=1):
    """Join arrays along an existing axis ``dim`` (MXNet's argument name)."""
    if len(arrays) == 1 and isinstance(arrays[0], (list, tuple)):
        arrays = tuple(arrays[0])
    if not arrays:
        raise ValueError('concat: no arrays given')
    first = arrays[0]
    for a in arrays[1:]:
        same_ctx(first, a, 'concat')
        if a.ndim != first.ndim:
            raise ValueError(f'concat: arrays of {first.ndim} and {a.ndim} dimensions')
    axis = norm_axis(dim, first.ndim, 'concat')
    xp = first.xp
    y = xp.concatenate([a._data for a in arrays], axis=axis)
    if not _state.recording or not any(a._node is not None or a._grad is not None
                                       for a in arrays):
        return _wrap(y, first._ctx)
    bounds = [int(b) for b in np.cumsum([a.shape[axis] for a in arrays])[:-1]]

    def backward(g):
        return tuple(xp.split(g, bounds, axis=axis))
    return record_op(backward, tuple(arrays), y, first._ctx, name='concat')


def stack(*arrays, axis=0):
    """Join same-shaped arrays along a new axis."""
    if len(arrays) == 1 and isinstance(arrays[0], (list, tuple)):
        arrays = tuple(arrays[0])
    if not arrays:
        raise ValueError('stack: no arrays given')
    first = arrays[0]
    for a in arrays[1:]:
        same_ctx(first, a, 'stack')
        if a.shape != first.shape:
            raise ValueError(f'stack: shapes {first.shape} and {a.shape} differ')
    ax = norm_axis(axis, first.ndim + 1, 'stack')
    xp = first.xp
    y = xp.stack([a._data for a in arrays], axis=ax)
    if not _state.recording or not any(a._node is not None or a._grad is not None
                                       for a in arrays):
        return _wrap(y, first._ctx)
    n = len(arrays)

    def backward(g):
        return tuple(xp.take(g, i, axis=ax) for i in range(n))
    return record_op(backward, tuple(arrays), y, first._ctx, name='stack')


def split(x, num_outputs, axis=1, squeeze_axis=False):
    """Split into ``num_outputs`` equal parts along ``axis``; returns a list (one array if
    ``num_outputs == 1``, as MXNet)."""
    axis = norm_axis(axis, x.ndim, 'split')
    size = x.shape[axis]
    if num_outputs <= 0 or size % num_outputs:
        raise ValueError(f'split: axis {axis} of size {size} cannot be split into '
                         f'{num_outputs} equal parts')
    xp = x.xp
    parts = xp.split(x._data, num_outputs, axis=axis)
    if squeeze_axis:
        if size != num_outputs:
            raise ValueError('split: squeeze_axis needs num_outputs == the axis size')
        parts = [p.squeeze(axis) for p in parts]
    if not tracked(x):
        outs = [_wrap(p, x._ctx) for p in parts]
    else:
        step = size // num_outputs
        shape = x.shape

        def backward(grads):
            dtype = x.dtype
            out = xp.zeros(shape, dtype=dtype)
            for i, g in enumerate(grads):
                if g is None:
                    continue
                idx = [slice(None)] * len(shape)
                idx[axis] = slice(i * step, (i + 1) * step)
                out[tuple(idx)] = xp.expand_dims(g, axis) if squeeze_axis else g
            return (out,)
        outs = record_multi(backward, (x,), parts, x._ctx, name='split')
    return outs[0] if num_outputs == 1 else outs


def tile(x, reps):
    """Repeat the whole array ``reps`` times along each axis."""
    xp = x.xp
    reps = (reps,) if isinstance(reps, int) else tuple(reps)
    y = xp.tile(x._data, reps)
    if not tracked(x):
        return _wrap(y, x._ctx)
    src = x.shape
    nd = max(len(src), len(reps))
    src_p = (1,) * (nd - len(src)) + src
    reps_p = (1,) * (nd - len(reps)) + reps

    def backward(g):
        inter = []
        for r, s in zip(reps_p, src_p):
            inter.extend([r, s])
        g = g.reshape(inter).sum(axis=tuple(range(0, 2 * nd, 2)))
        return (g.reshape(src),)
    return record_op(backward, (x,), y, x._ctx, name='tile')


def repeat(x, repeats, axis=None):
    """Repeat each element ``repeats`` times along ``axis`` (flattened if None)."""
    xp = x.xp
    y = xp.repeat(x._data, repeats, axis=axis)
    if not tracked(x):
        return _wrap(y, x._ctx)
    src = x.shape

    def backward(g):
        if axis is None:
            return (g.reshape(-1, repeats).sum(axis=1).reshape(src),)
        ax = norm_axis(axis, len(src))
        shape = src[:ax] + (src[ax], repeats) + src[ax + 1:]
        return (g.reshape(shape).sum(axis=ax + 1),)
    return record_op(backward, (x,), y, x._ctx, name='repeat')


def pad(x, pad_width, mode='constant', constant_value=0):
    """Pad with ``pad_width`` ((before, after) per axis); modes constant, edge, reflect."""
    xp = x.xp
    pw = tuple((int(a), int(b)) for a, b in pad_width)
    kwargs = {'constant_values': constant_value} if mode == 'constant' else {}
    y = xp.pad(x._data, pw, mode=mode, **kwargs)
    if not tracked(x):
        return _wrap(y, x._ctx)
    src = x.shape
    if mode == 'constant':
        sl = tuple(slice(a, a + s) for (a, _), s in zip(pw, src))
        return record_op(lambda g: (g[sl],), (x,), y, x._ctx, name='pad')

    def backward(g):
        # Scatter the padded gradient back through the index map of the padding.
        idx = xp.arange(int(np.prod(src))).reshape(src)
        pidx = xp.pad(idx, pw, mode=mode)
        out = xp.zeros(int(np.prod(src)), dtype=g.dtype)
        from ..backend import scatter_add
        scatter_add(xp, out, pidx.reshape(-1), g.reshape(-1))
        return (out.reshape(src),)
    return record_op(backward, (x,), y, x._ctx, name='pad')
