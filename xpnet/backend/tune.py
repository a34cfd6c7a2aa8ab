"""Opt-in host tuning: a process-wide setting xpnet never changes unless asked.

By default xpnet leaves the process as it found it: no CPU pinning, no interpreter or C
allocator settings (``xpnet/backend/hostpool.py``). :func:`tune_host` -- or the
environment variable ``XPNET_TUNE_HOST=1``, read when ``xpnet`` is imported -- is the one
explicit opt-in, for a process that does nothing but train: glibc's ``mallopt`` keeps freed
large blocks in the heap (mmap threshold 32 MB, trim threshold 1 GB), so the temporaries
of a training step are not handed back to the OS and page-faulted in again at the next
step. The process then keeps up to 1 GB of freed memory. What it buys is measured in
``docs/performance.md``; the other tunings xpnet once applied (pinning threads, a shorter
GIL switch interval) measured no gain once splits became deterministic and were removed.

Example::

    import xpnet
    xpnet.backend.tune_host()
"""
import os

__all__ = ['tune_host', 'tuned']

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3      # glibc's mallopt() parameter numbers
_MMAP_THRESHOLD = 32 << 20        # glibc's ceiling for the mmap threshold (64-bit)
_TRIM_THRESHOLD = 1 << 30

_tuned = {}


def tuned():
    """The tunings applied so far (a dict of name -> value; empty by default)."""
    return dict(_tuned)


def _mallopt():
    """glibc's ``mallopt`` through ctypes, or None with another C library."""
    try:
        import ctypes
        fn = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError, TypeError):       # (TypeError: Windows)
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_int]
    fn.restype = ctypes.c_int
    return fn


def tune_host():
    """Raise glibc's mmap and trim thresholds for this process (see the module docstring);
    a no-op without glibc.

    Returns:
        :func:`tuned`: what is now applied (``{'malloc': (mmap, trim thresholds)}``).
    """
    if 'malloc' not in _tuned:
        fn = _mallopt()
        if fn is not None and fn(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD) and \
                fn(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD):
            _tuned['malloc'] = (_MMAP_THRESHOLD, _TRIM_THRESHOLD)
    return tuned()


def tune_from_environment():
    """``tune_host()`` when ``XPNET_TUNE_HOST`` is ``1`` (called once at import)."""
    value = os.environ.get('XPNET_TUNE_HOST', '')
    if value not in ('', '0', '1'):
        raise ValueError(f'XPNET_TUNE_HOST must be 0 or 1, got {value!r}')
    if value == '1':
        tune_host()
