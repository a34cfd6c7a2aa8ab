"""``nd.save`` / ``nd.load``: lists or dicts of NDArrays in files.

xpnet writes ``.npz`` archives (atomically, see :mod:`xpnet.serialization`), or MXNet's own
binary format with ``format='mxnet'`` for files MXNet must read back. It reads both, telling
them apart by content: MXNet files (``mx.nd.save``, Gluon 1.x ``.params``) go through the
safe parser of :mod:`xpnet.layers.mxnet_params`, nothing is ever unpickled.

Example::

    nd.save('arrays.npz', {'w': w, 'b': b})
    nd.load('arrays.npz')                       # {'w': ..., 'b': ...} on cpu(0)
    nd.save('weights.params', [w, b], format='mxnet')
"""
import os

import numpy as np

from .backend import cpu, to_device
from .layers.mxnet_params import is_mxnet_params, read_mxnet_params
from .layers.mxnet_writer import write_mxnet_params
from .ndarray import NDArray, _wrap
from .serialization import FileFormatError, load_npz, save_npz

__all__ = ['save', 'load']

_LIST_KEY = '__xpnet_nd_list__'   # marks an archive holding a list (keys '0', '1', ...)


def _host_arrays(data):
    if isinstance(data, NDArray):
        data = [data]
    if isinstance(data, dict):
        items = list(data.items())
        for k, _ in items:
            if not isinstance(k, str):
                raise TypeError(f'nd.save: dict keys must be strings, got {k!r}')
    elif isinstance(data, (list, tuple)):
        items = [(str(i), v) for i, v in enumerate(data)]
    else:
        raise TypeError('nd.save: data must be an NDArray, a list of NDArrays or a dict of '
                        f'str -> NDArray, got {type(data).__name__}')
    for k, v in items:
        if not isinstance(v, NDArray):
            raise TypeError(f'nd.save: entry {k!r} is a {type(v).__name__}, not an NDArray')
    return items, isinstance(data, dict)


def save(fname, data, format='npz'):
    """Save an NDArray, a list of them or a dict ``str -> NDArray`` to ``fname``.

    Args:
        fname: the file (written atomically: a temporary file renamed into place).
        data: what to save.
        format: ``'npz'`` (xpnet's, the default) or ``'mxnet'`` (MXNet's binary format,
            readable by ``mx.nd.load`` and Gluon 1.x ``load_parameters``).
    """
    items, is_dict = _host_arrays(data)
    if format == 'mxnet':
        arrays = {k: v.asnumpy() for k, v in items}
        write_mxnet_params(fname, arrays if is_dict else list(arrays.values()))
    elif format == 'npz':
        arrays = {k: v.asnumpy() for k, v in items}
        if not is_dict:
            arrays[_LIST_KEY] = np.zeros(0, np.uint8)
        save_npz(fname, arrays)
    else:
        raise ValueError(f"nd.save: format must be 'npz' or 'mxnet', got {format!r}")


def load(fname, ctx=None):
    """Load what :func:`save` (or MXNet's ``nd.save``) wrote: a list or a dict of NDArrays
    on ``ctx`` (cpu by default).

    An MXNet file saved from a list has no names; one whose names are exactly
    ``'0'..'n-1'`` is also returned as a list.

    Raises:
        FileNotFoundError: no such file.
        FileFormatError: a truncated, corrupt or foreign file (the message names it).
    """
    if not os.path.exists(fname):
        raise FileNotFoundError(f'nd.load: file {fname!r} does not exist')
    ctx = ctx or cpu()
    if is_mxnet_params(fname):
        try:
            arrays = read_mxnet_params(fname)
        except Exception as err:
            raise FileFormatError(f'nd.load: cannot read MXNet file {fname!r}: it is '
                                  f'truncated or corrupt ({err})') from err
        as_list = list(arrays) == [str(i) for i in range(len(arrays))]
    else:
        arrays = load_npz(fname, what='NDArray')
        as_list = arrays.pop(_LIST_KEY, None) is not None
    out = {k: _wrap(to_device(v, ctx, copy=True), ctx) for k, v in arrays.items()}
    if as_list:
        return [out[str(i)] for i in range(len(out))]
    return out
