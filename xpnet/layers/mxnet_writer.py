"""Write MXNet's binary NDArray-list format (``mx.nd.save``, Gluon 1.x ``.params`` files).

The layout is the one :mod:`xpnet.layers.mxnet_params` reads: header ``uint64 0x112, 0``,
``uint64 n`` arrays (each ``uint32 0xF993FAC9, int32 0`` (dense), ``int32 ndim``, ``int64``
dims, ``int32 1, 0`` (cpu(0)), ``int32`` dtype flag, raw little-endian data), then
``uint64`` name count and the names (``uint64 length, bytes``). MXNet 1.x loads such a file
with ``mx.nd.load`` / ``load_parameters``. The file is written atomically.

Example::

    write_mxnet_params('net.params', {'0.weight': w, '0.bias': b})
"""
import struct

import numpy as np

from ..serialization import atomic_write
from .mxnet_params import _DTYPES, _LIST_MAGIC, _V2

__all__ = ['write_mxnet_params', 'encode_mxnet_params']

_FLAGS = {np.dtype(t): flag for flag, t in _DTYPES.items()}


def _encode_array(value):
    arr = np.ascontiguousarray(value)
    flag = _FLAGS.get(arr.dtype)
    if flag is None:
        raise TypeError(f'MXNet files cannot hold arrays of dtype {arr.dtype}')
    if arr.ndim == 0:              # MXNet 1.x has no 0-d arrays: store shape (1,)
        arr = arr.reshape(1)
    head = struct.pack(f'<Iii{arr.ndim}qiii', _V2, 0, arr.ndim, *arr.shape, 1, 0, flag)
    return head + arr.astype(arr.dtype.newbyteorder('<'), copy=False).tobytes()


def encode_mxnet_params(arrays):
    """The bytes of an MXNet NDArray-list file for a dict ``{name: host array}`` or a list
    of host arrays (saved without names, as ``mx.nd.save`` does for lists)."""
    if isinstance(arrays, dict):
        names, values = list(arrays), list(arrays.values())
    else:
        names, values = [], list(arrays)
    parts = [struct.pack('<QQQ', _LIST_MAGIC, 0, len(values))]
    parts.extend(_encode_array(v) for v in values)
    parts.append(struct.pack('<Q', len(names)))
    for name in names:
        raw = str(name).encode('utf-8')
        parts.append(struct.pack('<Q', len(raw)) + raw)
    return b''.join(parts)


def write_mxnet_params(filename, arrays):
    """Write ``arrays`` (see :func:`encode_mxnet_params`) to ``filename`` atomically: a
    temporary file in the same directory, fsync'ed, renamed over the target."""
    data = encode_mxnet_params(arrays)
    with atomic_write(filename) as f:
        f.write(data)
