"""Read MXNet's binary ``.params`` files (``save_parameters``/``nd.save``) without MXNet.

Gluon 1.x ``save_parameters`` stores parameters under structural names (``0.weight``,
``features.3.bias``) in the layouts xpnet uses, so ``load_parameters`` reads such a file
directly. The format (dmlc serialization, little-endian): a header ``uint64 0x112, uint64 0``,
``uint64 n`` arrays, each ``uint32 magic, int32 storage type, shape, int32 device type,
int32 device id, int32 dtype flag, raw data``, then ``uint64 n`` names, each
``uint64 length, bytes``. Only dense arrays are supported; nothing is ever unpickled.
"""
import struct

import numpy as np

__all__ = ['is_mxnet_params', 'read_mxnet_params']

_LIST_MAGIC = 0x112
_V1, _V2, _V3 = 0xF993FAC8, 0xF993FAC9, 0xF993FACA
_DTYPES = {0: np.float32, 1: np.float64, 2: np.float16, 3: np.uint8, 4: np.int32, 5: np.int8,
           6: np.int64, 7: np.bool_, 8: np.int16, 9: np.uint16, 10: np.uint32, 11: np.uint64}


def is_mxnet_params(filename):
    """True if the file starts with MXNet's NDArray-list header."""
    with open(filename, 'rb') as f:
        head = f.read(16)
    return len(head) == 16 and struct.unpack('<QQ', head) == (_LIST_MAGIC, 0)


class _Reader:
    def __init__(self, data):
        self.data, self.pos = data, 0

    def take(self, fmt):
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.data):
            raise ValueError(f'unexpected end of file at byte {self.pos}')
        out = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += size
        return out

    def raw(self, n):
        if self.pos + n > len(self.data):
            raise ValueError(f'unexpected end of file at byte {self.pos}')
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out


def _read_array(r):
    magic, = r.take('<I')
    if magic not in (_V2, _V3):
        raise ValueError(f'unsupported NDArray record (magic {magic:#x}); only files written '
                         'by MXNet >= 1.0 are supported')
    stype, = r.take('<i')
    if stype != 0:
        raise ValueError('sparse arrays in MXNet parameter files are not supported')
    ndim, = r.take('<i')
    if ndim < 0 or (ndim == 0 and magic == _V2):
        return None
    shape = r.take(f'<{ndim}q') if ndim else ()
    r.take('<ii')                                   # device type and id: irrelevant here
    flag, = r.take('<i')
    if flag not in _DTYPES:
        raise ValueError(f'unsupported MXNet dtype flag {flag}')
    dtype = np.dtype(_DTYPES[flag])
    count = int(np.prod(shape)) if shape else 1
    return np.frombuffer(r.raw(count * dtype.itemsize), dtype=dtype).reshape(shape).copy()


def read_mxnet_params(filename):
    """``{name: host array}`` from an MXNet ``.params`` file (``ValueError`` if malformed)."""
    with open(filename, 'rb') as f:
        r = _Reader(f.read())
    magic, _ = r.take('<QQ')
    if magic != _LIST_MAGIC:
        raise ValueError('not an MXNet parameter file')
    n, = r.take('<Q')
    arrays = [_read_array(r) for _ in range(n)]
    m, = r.take('<Q')
    if m not in (0, n):
        raise ValueError(f'{n} arrays but {m} names')
    names = []
    for _ in range(m):
        length, = r.take('<Q')
        names.append(r.raw(length).decode('utf-8'))
    if not names:
        names = [str(i) for i in range(n)]
    return {k: v for k, v in zip(names, arrays) if v is not None}
