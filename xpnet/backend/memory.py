"""Host memory helpers for large temporaries (the one place xpnet tunes host allocation).

``scratch`` pools the large column matrices of the convolution core (MXNet's "temp space");
``prime_host_allocator`` raises glibc's mmap/trim thresholds once per process (``mallopt``).
Both are no-ops for device arrays (CuPy has its own memory pool).
"""
import os
import threading
import weakref

import numpy as np

__all__ = ['scratch', 'prime_host_allocator']


def _prod(values):
    out = 1
    for v in values:
        out *= int(v)
    return out


class _Scratch:
    """Reusable host buffers for the large column matrices -- MXNet's "temp space" for
    im2col. A fresh 38 MB array every step is mmapped by the C allocator, zero-filled
    through ~10k page faults and unmapped again (45 ms of kernel time per step of the CIFAR
    benchmark); a buffer handed back after the backward pass costs nothing the next time.

    Only NumPy buffers of at least ``min_bytes`` are pooled (smaller ones are recycled by
    the allocator itself; CuPy has its own memory pool). At most ``max_bytes`` are kept.
    """

    def __init__(self, min_bytes=1 << 24, max_bytes=1 << 30):
        self.min_bytes, self.max_bytes = min_bytes, max_bytes
        self._free = []            # 1-D buffers ready for reuse, oldest first
        self._owned = {}           # id -> weak reference of each 1-D buffer handed out
        self._lock = threading.Lock()

    def take(self, xp, shape, dtype):
        """An uninitialized array of ``shape``/``dtype``, from the pool when possible."""
        dtype = np.dtype(dtype)
        n = _prod(shape)
        if xp is not np or n * dtype.itemsize < self.min_bytes:
            return xp.empty(shape, dtype=dtype)
        with self._lock:
            fits = [i for i, b in enumerate(self._free) if b.dtype == dtype and b.size >= n]
            if fits:
                buf = self._free.pop(min(fits, key=lambda i: self._free[i].size))
            else:
                buf = np.empty(n, dtype=dtype)
            self._owned[id(buf)] = weakref.ref(buf, self._forget(id(buf)))
        return buf[:n].reshape(shape)

    def _forget(self, key):
        """Weakref callback: a buffer dropped without give() leaves no entry behind."""
        def callback(ref):
            with self._lock:
                if self._owned.get(key) is ref:
                    del self._owned[key]
        return callback

    def give(self, arr):
        """Return an array obtained from :meth:`take` (anything else is ignored)."""
        if arr is None or type(arr) is not np.ndarray:
            return
        root = arr
        while root.base is not None:
            root = root.base
        with self._lock:
            ref = self._owned.get(id(root))
            # identity, not just the id: a buffer dropped without give() frees its id
            if ref is None or ref() is not root:
                return
            del self._owned[id(root)]
            self._free.append(root)
            while sum(b.nbytes for b in self._free) > self.max_bytes:
                self._free.pop(0)

    def clear(self):
        """Drop every pooled buffer."""
        with self._lock:
            self._free.clear()


scratch = _Scratch()
_allocator_primed = []


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3      # glibc's mallopt() parameter numbers
_MMAP_THRESHOLD = 32 << 20        # glibc's ceiling for the mmap threshold (64-bit)
_TRIM_THRESHOLD = 1 << 30


def c_function(name):
    """The C library's function ``name`` through ctypes (which releases the GIL around
    the call), looked up in the process's global namespace (glibc before 2.34 keeps the
    pthread functions in libpthread), or None where it is not available."""
    import ctypes
    try:
        return getattr(ctypes.CDLL(None), name)
    except (OSError, AttributeError, TypeError):    # (TypeError: Windows)
        return None


def _glibc_mallopt():
    """glibc's ``mallopt`` (None with another C library)."""
    import ctypes
    fn = c_function('mallopt')
    if fn is None:
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_int]
    fn.restype = ctypes.c_int
    return fn


def prime_host_allocator(xp):
    """Once per process, stop glibc's malloc from returning a training step's temporaries
    to the OS between steps.

    glibc maps every block above its mmap threshold (128 KB at start) separately and
    unmaps it when freed, and trims the heap top once more than the trim threshold is
    free. Either way the few-MB temporaries of a training step are page-faulted back in at
    the next step (~7k faults, 20-30 ms of kernel time per step of the CIFAR benchmark,
    measured). Setting the mmap threshold to glibc's ceiling (32 MB) and the trim
    threshold to 1 GB keeps them in the heap for reuse; a process then keeps up to 1 GB
    of freed heap memory. Without ``mallopt`` (another C library), a 31 MB block is
    allocated and freed instead, which raises glibc's dynamic thresholds part of the way.
    No-op for device arrays, and when the environment variable ``XPNET_TUNE_MALLOC`` is
    ``0`` (leave the C allocator exactly as the process configured it).
    """
    if _allocator_primed or xp is not np:
        return
    _allocator_primed.append(True)
    if os.environ.get('XPNET_TUNE_MALLOC', '1') == '0':
        return
    mallopt = _glibc_mallopt()
    if mallopt is not None and mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD) and \
            mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD):
        return
    np.empty((31 << 20) // 4, dtype=np.float32)   # allocated and freed at once
