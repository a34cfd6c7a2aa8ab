"""Safe files: written atomically, read with pickling disabled and within bounds.

Every file xpnet writes (parameters, trainer states, checkpoints) goes through
:func:`atomic_write` (:func:`save_npz` for arrays): the content is written to a temporary
file in the target's directory, flushed and fsync'ed, then renamed over the target, so a
crash leaves either the old file or the new one, never a torn one.

Reading treats every file as untrusted. :func:`load_npz` reads each member's ``.npy``
header first (name, shape, dtype) without touching its data, refuses pickled objects,
non-array members, duplicate names, overlapping members and other compression than
deflate, lets the caller refuse names and shapes it does not expect, and only then reads
the arrays it wants, never decompressing more than their headers declare. So loading
allocates at most what the caller expects (or, for a member with no expectation, what the
archive can hold). :func:`parse_json` bounds and checks JSON records. Every way a file
can be unreadable becomes one exception (a :class:`FileFormatError`) naming the file.

Example::

    save_npz('w.npz', {'weight': host_array})
    arrays = load_npz('w.npz', what='parameter')
    arrays = load_npz('w.npz', what='parameter',
                      select=lambda headers: [h.name for h in headers.values()
                                              if h.shape == (64, 20)])
"""
import contextlib
import glob
import json
import math
import os
import tempfile
import zipfile
import zlib
from typing import NamedTuple

import numpy as np

from .backend import to_host

__all__ = ['FileFormatError', 'ArrayHeader', 'atomic_write', 'save_npz', 'stale_temp_files',
           'read_npz_headers', 'load_npz', 'load_record', 'parse_json', 'check_schema',
           'MAX_JSON_BYTES']

#: The largest JSON record (checkpoint record, trainer-states metadata) read.
MAX_JSON_BYTES = 64 << 20
_MAX_NPY_HEADER = 10000           # NumPy's own default limit for a .npy header
_MAX_DEFLATE_RATIO = 1032         # deflate's ceiling: 258 bytes out per 2 bits in
_ARRAY_KINDS = 'biufcSU'          # bool, ints, floats, complex, bytes, str: no objects
_TEMP_SUFFIX = '.tmp'


class FileFormatError(ValueError):
    """A file is truncated, corrupt, not in the expected format, or holds unexpected data."""


class ArrayHeader(NamedTuple):
    """What an ``.npz`` member declares, read from its ``.npy`` header alone."""
    name: str
    shape: tuple
    dtype: np.dtype
    fortran_order: bool
    nbytes: int


# ---- writing ------------------------------------------------------------------------------------

def _temp_prefix(filename):
    return '.' + os.path.basename(filename) + '.'


@contextlib.contextmanager
def atomic_write(filename):
    """A binary file object whose content replaces ``filename`` atomically when the block
    ends without an exception; on an exception (disk full, interrupt) the temporary file is
    removed and ``filename`` is left as it was.

    The temporary file is ``.<basename>.<random>.tmp`` in the same directory (see
    :func:`stale_temp_files`).

    Example::

        with atomic_write('log.json') as f:
            f.write(json.dumps(record).encode())
    """
    directory = os.path.dirname(os.path.abspath(filename))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(filename), suffix=_TEMP_SUFFIX,
                               dir=directory)
    try:
        with os.fdopen(fd, 'wb') as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, filename)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def stale_temp_files(filename):
    """Temporary files that :func:`atomic_write` of ``filename`` left behind when its
    process was killed mid-write (only names of that pattern, for that target)."""
    directory = os.path.dirname(os.path.abspath(filename))
    pattern = glob.escape(_temp_prefix(filename)) + '*' + _TEMP_SUFFIX
    return sorted(glob.glob(os.path.join(glob.escape(directory), pattern)))


def save_npz(filename, arrays):
    """Write ``{name: array}`` (host or device arrays) to ``filename`` atomically,
    uncompressed."""
    with atomic_write(filename) as f:
        np.savez(f, **{k: to_host(v) for k, v in arrays.items()})


# ---- reading ------------------------------------------------------------------------------------

class _Archive:
    """An opened ``.npz`` with its members' headers checked (no array data read yet)."""

    def __init__(self, path, fail):
        self.fail = fail
        self.zip = zipfile.ZipFile(path)
        self.headers, self._members = {}, {}
        try:
            self._scan(os.path.getsize(path))
        except BaseException:
            self.zip.close()
            raise

    def _scan(self, size):
        infos = self.zip.infolist()
        seen = set()
        names = [self._check_member(info, seen) for info in infos]
        end = 0
        for info in sorted(infos, key=lambda i: i.header_offset):
            if info.header_offset < end:   # members sharing data: a zip bomb's trick
                self.fail(f'its members overlap (at byte {info.header_offset})')
            end = info.header_offset + 30 + len(info.orig_filename) + info.compress_size
            if end > size:                 # so no member can claim more than the file holds
                self.fail(f'member {info.orig_filename!r} extends past the end of the file')
        for name, info in zip(names, infos):
            with self.zip.open(info) as fp:
                header, offset = self._read_header(fp, name)
            self._check_sizes(info, header, offset)
            self.headers[name] = header
            self._members[name] = (info, offset)

    def _check_member(self, info, seen):
        fail = self.fail
        if not info.filename.endswith('.npy'):
            fail(f'member {info.filename!r} is not a .npy array')
        name = info.filename[:-4]
        if name in seen:
            fail(f'array {name!r} appears twice')
        seen.add(name)
        if info.flag_bits & 0x1:
            fail(f'array {name!r} is encrypted')
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            fail(f'array {name!r} uses compression method {info.compress_type}; only stored '
                 'and deflated members are read')
        return name

    def _read_header(self, fp, name):
        version = np.lib.format.read_magic(fp)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(fp, _MAX_NPY_HEADER)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(fp, _MAX_NPY_HEADER)
        else:
            self.fail(f'array {name!r} has .npy format version {version}')
        if dtype.hasobject or dtype.kind not in _ARRAY_KINDS:
            self.fail(f'array {name!r} has dtype {dtype}; object, structured and other '
                      'non-numeric arrays are refused (pickling is disabled)')
        if any(d < 0 for d in shape):
            self.fail(f'array {name!r} declares the negative shape {shape}')
        nbytes = math.prod(shape) * dtype.itemsize
        return ArrayHeader(name, tuple(shape), dtype, bool(fortran), nbytes), fp.tell()

    def _check_sizes(self, info, header, offset):
        declared = offset + header.nbytes
        if declared != info.file_size:
            self.fail(f'array {header.name!r} declares shape {header.shape} {header.dtype} '
                      f'({declared} bytes with its header) but the archive lists '
                      f'{info.file_size} bytes')
        most = info.compress_size if info.compress_type == zipfile.ZIP_STORED \
            else info.compress_size * _MAX_DEFLATE_RATIO + 1024
        if info.file_size > most:
            self.fail(f'array {header.name!r} lists {info.file_size} bytes, more than its '
                      f'{info.compress_size} compressed bytes can hold')

    def read(self, name):
        """The array ``name``, reading exactly the bytes its header declares."""
        header = self.headers[name]
        info, offset = self._members[name]
        out = np.empty(math.prod(header.shape), dtype=header.dtype)
        buf = memoryview(out.view(np.uint8)) if header.nbytes else memoryview(b'')
        with self.zip.open(info) as fp:
            fp.read(offset)
            done = 0
            while done < header.nbytes:
                chunk = fp.read(min(header.nbytes - done, 1 << 22))
                if not chunk:
                    self.fail(f'array {name!r} ends after {done} of {header.nbytes} bytes')
                buf[done:done + len(chunk)] = chunk
                done += len(chunk)
            if fp.read(1):          # also makes zipfile check the CRC at the member's end
                self.fail(f'array {name!r} holds more data than its header declares')
        if header.fortran_order:
            return out.reshape(header.shape[::-1]).transpose()
        return out.reshape(header.shape)


def _failer(filename, what, error):
    def fail(reason):
        raise error(f'cannot read {what} file {filename!r}: {reason}')
    return fail


@contextlib.contextmanager
def _open_archive(filename, what, error):
    if not os.path.exists(filename):
        raise FileNotFoundError(f'{what} file {filename!r} does not exist')
    fail = _failer(filename, what, error)
    try:
        archive = _Archive(filename, fail)
    except error:
        raise
    except Exception as err:   # BadZipFile, EOF, bad .npy headers, OSError
        raise error(f'cannot read {what} file {filename!r}: it is truncated, corrupt or not '
                    f'an xpnet .npz file ({err})') from err
    try:
        yield archive
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as err:   # CRC, bad deflate
        raise error(f'cannot read {what} file {filename!r}: it is truncated or corrupt '
                    f'({err})') from err
    finally:
        archive.zip.close()


def read_npz_headers(filename, what='xpnet', error=FileFormatError):
    """``{name: ArrayHeader}`` of an ``.npz`` file, reading no array data.

    Raises:
        FileNotFoundError: no such file.
        ``error``: the file is not a well-formed ``.npz`` of plain arrays.
    """
    with _open_archive(filename, what, error) as archive:
        return dict(archive.headers)


def load_npz(filename, what='xpnet', error=FileFormatError, select=None, max_bytes=None):
    """``{name: host array}`` from an ``.npz`` file, validated before anything is read.

    Args:
        filename: the file.
        what: what kind of file it is, for messages ('parameter', 'trainer states').
        error: the exception class raised for a bad file (a :class:`FileFormatError`).
        select: ``select(headers) -> names`` picks the arrays to read from
            ``{name: ArrayHeader}`` and may raise ``error`` for names, shapes or dtypes it
            does not expect (default: read every array).
        max_bytes: refuse the file if the selected arrays hold more bytes than this.

    Raises:
        FileNotFoundError: no such file.
        ``error``: truncated, corrupt, pickled, unexpected or too large; the message names
            the file and says it is a ``what`` file.
    """
    with _open_archive(filename, what, error) as archive:
        headers = archive.headers
        names = list(headers) if select is None else list(select(dict(headers)))
        unknown = [n for n in names if n not in headers]
        if unknown:
            raise ValueError(f'load_npz: select returned names the file lacks: {unknown}')
        total = sum(headers[n].nbytes for n in names)
        if max_bytes is not None and total > max_bytes:
            archive.fail(f'its arrays hold {total} bytes, more than the {max_bytes} '
                         'expected')
        return {n: archive.read(n) for n in names}


def load_record(filename, what, error=FileFormatError, meta_key='__meta__'):
    """``(meta, arrays)`` of a record file: an ``.npz`` holding a JSON object under
    ``meta_key`` (UTF-8 bytes as a uint8 vector, or a str) and the arrays it refers to.

    xpnet writes records uncompressed, so their arrays may hold no more bytes than the file
    itself: a record that would expand beyond that is refused before anything is read.

    Raises:
        FileNotFoundError: no such file.
        ``error``: the record is truncated, corrupt, too large or not a record.
    """
    def select(headers):
        h = headers.get(meta_key)
        if h is None or not (h.dtype == np.uint8 and len(h.shape) == 1 or
                             h.dtype.kind == 'U' and h.shape == ()):
            raise error(f'{what} file {filename!r} has no JSON record {meta_key!r}')
        if h.nbytes > 4 * MAX_JSON_BYTES:
            raise error(f'{what} file {filename!r}: its JSON record is too large')
        return list(headers)

    size = os.path.getsize(filename) if os.path.exists(filename) else 0
    arrays = load_npz(filename, what, error, select, max_bytes=size)
    meta = parse_json(arrays.pop(meta_key), f'{what} file {filename!r}', error)
    return meta, arrays


def parse_json(raw, what, error=FileFormatError, max_bytes=MAX_JSON_BYTES, kind=dict):
    """The JSON value in ``raw`` (bytes, a str, or a uint8/str array of a file).

    Args:
        raw: the encoded record.
        what: what the record is, for messages.
        error: the exception class raised for a bad record.
        max_bytes: the largest record accepted (in bytes, or characters for a str).
        kind: the type the top-level value must have (None: any).
    """
    if isinstance(raw, np.ndarray):
        if raw.dtype == np.uint8 and raw.ndim == 1:
            raw = raw.tobytes()
        elif raw.dtype.kind == 'U' and raw.ndim == 0:
            raw = str(raw[()])
        else:
            raise error(f'{what}: expected a JSON record, got a {raw.dtype} array of shape '
                        f'{raw.shape}')
    if len(raw) > max_bytes:
        raise error(f'{what}: the JSON record is larger than {max_bytes} bytes')
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError) as err:   # bad UTF-8 and JSON, nesting bombs
        raise error(f'{what}: the JSON record is corrupt ({err})') from None
    if kind is not None and not isinstance(value, kind):
        raise error(f'{what}: expected a JSON {kind.__name__}, got {type(value).__name__}')
    return value


def check_schema(value, schema, what, error=FileFormatError, path='record'):
    """Check the types of a decoded JSON record against ``schema``.

    ``schema`` is a type or tuple of types (``bool`` is not accepted as an ``int``), a dict
    of required keys to schemas (other keys are allowed), or a one-element list: a list
    whose items all match that schema.

    Example::

        check_schema(meta, {'version': int, 'files': [{'name': str, 'size': int}]},
                     'checkpoint record', CheckpointError)
    """
    if isinstance(schema, dict):
        if not isinstance(value, dict):
            raise error(f'{what}: {path} must be an object, got {type(value).__name__}')
        for key, sub in schema.items():
            if key not in value:
                raise error(f'{what}: {path} lacks {key!r}')
            check_schema(value[key], sub, what, error, f'{path}.{key}')
    elif isinstance(schema, list):
        if not isinstance(value, list):
            raise error(f'{what}: {path} must be a list, got {type(value).__name__}')
        for i, item in enumerate(value):
            check_schema(item, schema[0], what, error, f'{path}[{i}]')
    else:
        types = schema if isinstance(schema, tuple) else (schema,)
        if not isinstance(value, types) or isinstance(value, bool) and bool not in types:
            names = ' or '.join(t.__name__ for t in types)
            raise error(f'{what}: {path} must be {names}, got {type(value).__name__}')
