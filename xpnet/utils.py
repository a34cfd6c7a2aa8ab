"""Data-parallel helpers and small utilities, as Gluon's ``gluon.utils``.

Example::

    ctxs = [xpnet.cpu(0), xpnet.cpu(1)]
    xs = xpnet.utils.split_and_load(batch, ctxs)        # one slice per device
    ...
    trainer.allreduce_grads()
    norm = xpnet.utils.clip_global_norm([p.grad(ctxs[0]) for p in params.values()], 1.0)
    trainer.update(batch_size)
"""
import contextlib
import hashlib
import math
import os
import warnings

import numpy as np

from .backend import Context, is_array, to_device
from .ndarray import NDArray, _wrap, array

__all__ = ['split_data', 'split_and_load', 'clip_global_norm', 'check_sha1', 'replace_file']


def _to_ctx(arr, ctx):
    """``arr`` (a device array) on ``ctx`` (:func:`~xpnet.backend.to_device`: under ``ctx``'s
    device, a peer copy from another GPU)."""
    return to_device(arr, ctx)


def _section_bounds(size, num_slice):
    """Start/end of each of ``num_slice`` near-equal parts of ``size`` (the first
    ``size % num_slice`` parts are one larger), as Gluon splits."""
    each, extras = divmod(size, num_slice)
    bounds, start = [], 0
    for i in range(num_slice):
        end = start + each + (1 if i < extras else 0)
        bounds.append((start, end))
        start = end
    return bounds


def _check_split(shape, num_slice, batch_axis, even_split):
    if not isinstance(num_slice, int) or num_slice < 1:
        raise ValueError(f'num_slice must be a positive int, got {num_slice!r}')
    if not -len(shape) <= batch_axis < len(shape):
        raise ValueError(f'batch_axis {batch_axis} is out of range for data of shape {shape}')
    size = shape[batch_axis]
    if even_split and size % num_slice != 0:
        raise ValueError(
            f'data with shape {shape} cannot be evenly split into {num_slice} slices along '
            f'axis {batch_axis}. Use a batch size that\'s multiple of {num_slice} or set '
            'even_split=False to allow uneven partitioning of data.')
    if size < num_slice:
        raise ValueError(f'data with shape {shape} has {size} elements along axis '
                         f'{batch_axis}: too few for {num_slice} slices')
    return size


def _slice(ndim, batch_axis, start, end):
    key = [slice(None)] * ndim
    key[batch_axis] = slice(start, end)
    return tuple(key)


def split_data(data, num_slice, batch_axis=0, even_split=True):
    """Split an NDArray into ``num_slice`` slices along ``batch_axis``.

    Args:
        data: an NDArray (a batch).
        num_slice: the number of slices.
        batch_axis: the axis to split.
        even_split: require ``data.shape[batch_axis]`` to be a multiple of ``num_slice``
            (a ``ValueError`` otherwise); if False the first slices get one extra element.

    Returns:
        A list of NDArrays (also when ``num_slice`` is 1).
    """
    if not isinstance(data, NDArray):
        data = array(data)
    size = _check_split(data.shape, num_slice, batch_axis, even_split)
    return [data[_slice(data.ndim, batch_axis, s, e)]
            for s, e in _section_bounds(size, num_slice)]


def split_and_load(data, ctx_list, batch_axis=0, even_split=True):
    """Split a batch along ``batch_axis`` and put one slice on each context of ``ctx_list``.

    Args:
        data: an NDArray, a NumPy array or nested lists (float input becomes float32).
        ctx_list: a list of Contexts.
        batch_axis, even_split: see :func:`split_data`.

    Returns:
        A list of NDArrays, one per context.

    Example::

        xs = split_and_load(x, [xpnet.cpu(0), xpnet.cpu(1)])   # x: (64, 784) -> 2 x (32, 784)
    """
    if isinstance(ctx_list, Context):
        ctx_list = [ctx_list]
    ctx_list = [Context(c) for c in ctx_list]
    if not ctx_list:
        raise ValueError('split_and_load: ctx_list is empty')
    copies = getattr(data, '_device_copies', None)
    if copies is not None and copies[0] == (tuple(ctx_list), batch_axis, even_split):
        return list(copies[1])      # copied ahead by xpnet.data.prefetch_to_devices
    if not isinstance(data, NDArray):
        host = data if is_array(data) else np.asarray(data)
        dtype = np.float32 if host.dtype.kind in 'fc' else None
        if len(ctx_list) == 1:
            return [array(host, ctx=ctx_list[0], dtype=dtype)]
        # Slice on the host and copy each slice once, straight to its device.
        size = _check_split(tuple(host.shape), len(ctx_list), batch_axis, even_split)
        return [_wrap(to_device(host[_slice(host.ndim, batch_axis, s, e)], ctx, dtype=dtype,
                                copy=True), ctx)
                for (s, e), ctx in zip(_section_bounds(size, len(ctx_list)), ctx_list)]
    if len(ctx_list) == 1:
        return [data.as_in_context(ctx_list[0])]
    slices = split_data(data, len(ctx_list), batch_axis, even_split)
    return [s.as_in_context(ctx) for s, ctx in zip(slices, ctx_list)]


def clip_global_norm(arrays, max_norm, check_isfinite=True):
    """Rescale arrays in place so that the 2-norm of all of them together is <= ``max_norm``.

    Every array is multiplied by ``min(1, max_norm / (total_norm + 1e-8))`` (Gluon's rule).

    Args:
        arrays: a list of NDArrays (typically gradients), possibly on several devices.
        max_norm: the largest allowed global norm.
        check_isfinite: read the norm back to the host, warn if it is NaN or infinite, and
            return it as a float (MXNet's default); if False nothing is synchronised: the
            scale is applied on the device and the norm is returned as an NDArray of shape
            (1,) on the first array's device.

    Returns:
        The global norm before clipping.

    On a device, arrays of one device and float dtype take two multi-tensor kernels in
    all (the norm with float64 sums, then the rescaling, which reads the norm on the
    device); with ``check_isfinite`` the norm is read back afterwards.

    Example::

        norm = clip_global_norm([p.grad() for p in net.collect_params().values()], 1.0)
    """
    arrays = list(arrays)
    if not arrays:
        raise ValueError('clip_global_norm: arrays is empty')
    ctx = arrays[0].context
    xp = ctx.xp
    if _fused_norm_applies(arrays, ctx):
        norm = _clip_on_device(arrays, ctx, max_norm)
        if not check_isfinite:
            return _wrap(norm, ctx)
        value = float(_wrap(norm, ctx).asnumpy()[0])
        if not math.isfinite(value):
            warnings.warn(UserWarning('nan or inf is detected. Clipping results will be '
                                      'undefined.'), stacklevel=2)
        return value
    total = None
    for a in arrays:
        with a.context.use():
            flat = a._data.reshape(-1)
            sq = _to_ctx(a.xp.dot(flat, flat).reshape(1), ctx)
        with ctx.use():
            total = sq if total is None else total + sq
    with ctx.use():
        norm = xp.sqrt(total)
    if check_isfinite:
        value = float(norm[0])
        if not math.isfinite(value):
            warnings.warn(UserWarning('nan or inf is detected. Clipping results will be '
                                      'undefined.'), stacklevel=2)
        scale = max_norm / (value + 1e-8)
        if scale < 1.0:
            for a in arrays:
                with a.context.use():
                    a._data *= a.dtype.type(scale).item()
        return value
    with ctx.use():
        scale = xp.minimum(max_norm / (norm + 1e-8), 1.0)
    for a in arrays:
        with a.context.use():
            a._data *= _to_ctx(scale, a.context).astype(a.dtype)
    return _wrap(norm, ctx)


def _fused_norm_applies(arrays, ctx):
    """Whether clip_global_norm runs as two multi-tensor kernels: every array on ``ctx``
    (a device) with one float dtype."""
    from .backend.kernels import fused
    dtype = arrays[0].dtype
    return fused(ctx.xp, dtype) and all(a.context == ctx and a.dtype == dtype
                                        and a._data.flags.c_contiguous for a in arrays)


_NORM_TABLES = {}


def _clip_on_device(arrays, ctx, max_norm):
    """The global norm of ``arrays`` (a (1,) device array) and the rescaling, on the
    device."""
    from .backend.kernels.optim import TensorTable, global_norm, scale_by_norm
    xp = ctx.xp
    table = _NORM_TABLES.get(ctx)
    if table is None:
        table = _NORM_TABLES[ctx] = TensorTable()
    data = [a._data for a in arrays]
    with ctx.use():
        norm = global_norm(xp, table, data)
        scale_by_norm(xp, table, data, norm, float(max_norm))
    return norm


def check_sha1(filename, sha1_hash):
    """True if the SHA-1 of the file's content equals ``sha1_hash`` (hex digits)."""
    sha1 = hashlib.sha1()
    with open(filename, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 20), b''):
            sha1.update(chunk)
    return sha1.hexdigest() == sha1_hash


def replace_file(src, dst):
    """Move ``src`` over ``dst`` atomically (``os.replace``); ``src`` is removed on failure."""
    try:
        os.replace(src, dst)
    except OSError:
        with contextlib.suppress(OSError):
            os.remove(src)
        raise
