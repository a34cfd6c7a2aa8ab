"""Safe files: ``.npz`` archives written atomically and read with pickling disabled.

Every file xpnet writes (parameters, trainer states, checkpoints) goes through
:func:`save_npz`: the archive is written to a temporary file in the target's directory,
flushed and fsync'ed, then renamed over the target, so a crash leaves either the old file or
the new one, never a torn one. :func:`load_npz` refuses pickled objects and turns every way a
file can be unreadable into one clear exception naming the file.

Example::

    save_npz('w.npz', {'weight': host_array})
    arrays = load_npz('w.npz', what='parameter')
"""
import contextlib
import os
import tempfile

import numpy as np

from .backend import to_host

__all__ = ['save_npz', 'load_npz', 'write_atomically', 'FileFormatError']


class FileFormatError(ValueError):
    """A file is truncated, corrupt or not in the expected format."""


def save_npz(filename, arrays):
    """Write ``{name: array}`` (host or device arrays) to ``filename`` atomically."""
    write_atomically(filename, lambda f: np.savez(f, **{k: to_host(v)
                                                         for k, v in arrays.items()}))


def write_atomically(filename, write):
    """Call ``write(binary file)`` on a temporary file in ``filename``'s directory, fsync it
    and rename it over ``filename``; on any error the temporary file is removed."""
    directory = os.path.dirname(os.path.abspath(filename))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix='.' + os.path.basename(filename) + '.', suffix='.tmp',
                               dir=directory)
    try:
        with os.fdopen(fd, 'wb') as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, filename)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def load_npz(filename, what='xpnet', error=FileFormatError):
    """``{name: host array}`` from an ``.npz`` file, with pickling disabled.

    Raises:
        FileNotFoundError: no such file.
        ``error`` (a :class:`FileFormatError` by default): truncated, corrupt, pickled
            or not an npz; the message names the file and says it is a ``what`` file.
    """
    if not os.path.exists(filename):
        raise FileNotFoundError(f'{what} file {filename!r} does not exist')
    try:
        with np.load(filename, allow_pickle=False) as f:
            return {k: f[k] for k in f.files}
    except Exception as err:  # BadZipFile, CRC/EOF errors, ValueError (pickled data), OSError
        raise error(f'cannot read {what} file {filename!r}: it is truncated, corrupt or not '
                    f'an xpnet .npz file ({err})') from err
