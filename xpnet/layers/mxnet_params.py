"""Read MXNet's binary ``.params`` files (``save_parameters``/``nd.save``) without MXNet.

Gluon 1.x ``save_parameters`` stores parameters under structural names (``0.weight``,
``features.3.bias``) in the layouts xpnet uses, so ``load_parameters`` reads such a file
directly. The format (dmlc serialization, little-endian): a header ``uint64 0x112, uint64 0``,
``uint64 n`` arrays, each ``uint32 magic, int32 storage type, int32 ndim, int64 dims[ndim],
int32 device type, int32 device id, int32 dtype flag, raw data``, then ``uint64 m`` names
(``m`` is ``n``, or 0 for an unnamed ``nd.save`` list), each ``uint64 length, bytes``.

The file is untrusted: every count, ndim, dimension, dtype flag and length is checked
against the bytes that remain before it is used, so a crafted file fails at once with a
clear error and nothing larger than the file is ever allocated. Only dense arrays are
supported; nothing is ever unpickled.
"""
import math
import struct

import numpy as np

from ..serialization import ArrayHeader, FileFormatError

__all__ = ['is_mxnet_params', 'read_mxnet_params']

_LIST_MAGIC = 0x112
_V1, _V2, _V3 = 0xF993FAC8, 0xF993FAC9, 0xF993FACA
_DTYPES = {0: np.float32, 1: np.float64, 2: np.float16, 3: np.uint8, 4: np.int32, 5: np.int8,
           6: np.int64, 7: np.bool_, 8: np.int16, 9: np.uint16, 10: np.uint32, 11: np.uint64}
_MAX_NDIM = 32
_MIN_RECORD = 12        # magic, storage type and ndim of an array record


def is_mxnet_params(filename):
    """True if the file starts with MXNet's NDArray-list header."""
    with open(filename, 'rb') as f:
        head = f.read(16)
    return len(head) == 16 and struct.unpack('<QQ', head) == (_LIST_MAGIC, 0)


class _Reader:
    """Bounds-checked little-endian reads from the bytes of a file."""

    def __init__(self, data, fail):
        self.data, self.pos, self.fail = data, 0, fail

    @property
    def left(self):
        return len(self.data) - self.pos

    def take(self, fmt):
        size = struct.calcsize(fmt)
        if size > self.left:
            self.fail(f'it is truncated (it ends at byte {len(self.data)} inside a record '
                      f'starting at byte {self.pos})')
        out = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += size
        return out

    def count(self, what, unit):
        """A uint64 count of items of at least ``unit`` bytes each, checked against the
        bytes left."""
        n, = self.take('<Q')
        if n * unit > self.left:
            self.fail(f'it declares {n} {what} at byte {self.pos - 8} but only {self.left} '
                      'bytes follow (truncated or corrupt)')
        return n

    def skip(self, n):
        if n > self.left:
            self.fail(f'it is truncated (array data of {n} bytes at byte {self.pos}, '
                      f'{self.left} bytes left)')
        start = self.pos
        self.pos += n
        return start


def _read_record(r, index):
    """``(shape, dtype, offset)`` of array record ``index``; None for an empty NDArray."""
    magic, = r.take('<I')
    if magic not in (_V2, _V3):
        r.fail(f'array {index} has an unsupported record magic {magic:#x} (only files '
               'written by MXNet >= 1.0 are supported)')
    stype, ndim = r.take('<ii')
    if stype != 0:
        r.fail(f'array {index} is sparse (storage type {stype}), which is not supported')
    if ndim == -1 and magic == _V3 or ndim == 0 and magic == _V2:
        return None                           # MXNet's "none" array: no data follows
    if not 0 <= ndim <= _MAX_NDIM:
        r.fail(f'array {index} declares {ndim} dimensions')
    shape = r.take(f'<{ndim}q') if ndim else ()
    if any(d < 0 for d in shape):
        r.fail(f'array {index} declares the negative shape {shape}')
    r.take('<ii')                                   # device type and id: irrelevant here
    flag, = r.take('<i')
    if flag not in _DTYPES:
        r.fail(f'array {index} has the unsupported MXNet dtype flag {flag}')
    dtype = np.dtype(_DTYPES[flag]).newbyteorder('<')
    offset = r.skip(math.prod(shape) * dtype.itemsize)
    return shape, dtype, offset


def _read_names(r, n):
    m = r.count('names', 8)
    if m not in (0, n):
        r.fail(f'it holds {n} arrays but {m} names')
    names = []
    for _ in range(m):
        length = r.count('name bytes', 1)
        start = r.skip(length)
        try:
            names.append(r.data[start:start + length].decode('utf-8'))
        except UnicodeDecodeError:
            r.fail(f'name {len(names)} is not UTF-8 text')
    if r.left:
        r.fail(f'{r.left} unexpected bytes follow the names')
    return names or [str(i) for i in range(n)]


def read_mxnet_params(filename, select=None, error=FileFormatError, what='parameter'):
    """``{name: host array}`` from an MXNet ``.params`` (or ``nd.save``) file.

    Args:
        filename: the file.
        select: ``select(headers) -> names``: picks the arrays to copy out of
            ``{name: ArrayHeader}`` (see :func:`xpnet.serialization.load_npz`) and may raise
            for ones it does not expect (default: every array).
        error: the exception class raised for a malformed file.
        what: what kind of file it is, for messages.

    Raises:
        ``error``: the file is truncated, corrupt or uses a feature not supported; the
            message names the file and the byte where it went wrong.
    """
    def fail(reason):
        raise error(f'cannot read {what} file {filename!r}: {reason}')

    with open(filename, 'rb') as f:
        r = _Reader(f.read(), fail)
    magic, _ = r.take('<QQ')
    if magic != _LIST_MAGIC:
        fail('it is not an MXNet parameter file')
    n = r.count('arrays', _MIN_RECORD)
    records = [_read_record(r, i) for i in range(n)]
    names = _read_names(r, n)
    headers = {}
    for name, rec in zip(names, records):
        if name in headers:
            fail(f'array {name!r} appears twice')
        if rec is not None:
            shape, dtype, offset = rec
            headers[name] = ArrayHeader(name, shape, dtype, False, math.prod(shape) *
                                        dtype.itemsize)
    located = {name: rec for name, rec in zip(names, records) if rec is not None}
    chosen = list(headers) if select is None else list(select(dict(headers)))
    out = {}
    for name in chosen:
        shape, dtype, offset = located[name]
        count = math.prod(shape)
        out[name] = np.frombuffer(r.data, dtype=dtype, count=count,
                                  offset=offset).reshape(shape).astype(dtype.newbyteorder('='))
    return out
