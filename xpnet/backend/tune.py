"""Opt-in host tunings: process-wide settings xpnet never changes unless asked.

By default xpnet leaves the process as it found it: no CPU pinning, no interpreter or C
allocator settings (``xpnet/backend/hostpool.py``). :func:`tune_host` -- or the
environment variable ``XPNET_TUNE_HOST=1``, read when ``xpnet`` is imported -- is the one
explicit opt-in to the tunings that measured faster on some machines, for a process that
does nothing but train (see ``docs/performance.md`` for what they buy):

- ``malloc``: glibc's ``mallopt`` keeps freed large blocks in the heap (mmap threshold
  32 MB, trim threshold 1 GB), so a training step's temporaries are not page-faulted
  back in at every step; the process then keeps up to 1 GB of freed memory;
- ``pin_threads``: each of xpnet's own pool threads keeps to one CPU of those the process
  may use (never the caller's threads). Not for several processes on one machine (e.g.
  data-parallel ranks): they would pin onto the same CPUs;
- ``switch_interval``: the GIL switch interval (``sys.setswitchinterval``) lowered to
  0.5 ms, so a thread coming back from a NumPy call waits less for one running Python.

Example::

    import xpnet
    xpnet.backend.tune_host()              # all three
    xpnet.backend.tune_host(malloc=False)  # the others only
"""
import os
import sys

__all__ = ['tune_host', 'tuned']

GIL_SWITCH_SECONDS = 0.0005
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3      # glibc's mallopt() parameter numbers
_MMAP_THRESHOLD = 32 << 20        # glibc's ceiling for the mmap threshold (64-bit)
_TRIM_THRESHOLD = 1 << 30

_tuned = {}


def tuned():
    """The tunings applied so far (a dict of name -> value)."""
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


def tune_host(malloc=True, pin_threads=True, switch_interval=True):
    """Apply the opt-in host tunings (see the module docstring) to this process.

    Args:
        malloc: raise glibc's mmap and trim thresholds (no-op without glibc).
        pin_threads: pin each of xpnet's pool threads to one CPU (no-op where the OS
            has no CPU affinity).
        switch_interval: lower the GIL switch interval to 0.5 ms.

    Returns:
        :func:`tuned`: what is now applied.
    """
    if malloc and 'malloc' not in _tuned:
        fn = _mallopt()
        if fn is not None and fn(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD) and \
                fn(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD):
            _tuned['malloc'] = (_MMAP_THRESHOLD, _TRIM_THRESHOLD)
    if pin_threads and hasattr(os, 'sched_setaffinity'):
        from . import hostpool
        hostpool.pin_threads(True)
        _tuned['pin_threads'] = True
    if switch_interval:
        sys.setswitchinterval(GIL_SWITCH_SECONDS)
        _tuned['switch_interval'] = GIL_SWITCH_SECONDS
    return tuned()


def tune_from_environment():
    """``tune_host()`` when ``XPNET_TUNE_HOST`` is ``1`` (called once at import)."""
    value = os.environ.get('XPNET_TUNE_HOST', '')
    if value not in ('', '0', '1'):
        raise ValueError(f'XPNET_TUNE_HOST must be 0 or 1, got {value!r}')
    if value == '1':
        tune_host()
