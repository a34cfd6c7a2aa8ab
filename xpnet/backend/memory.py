"""Host memory helpers for large temporaries (the one place xpnet tunes host allocation).

``scratch`` pools the large column matrices of the convolution core (MXNet's "temp space");
``prime_host_allocator`` raises glibc's mmap/trim thresholds once per process. Both are
no-ops for device arrays (CuPy has its own memory pool).
"""
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


def prime_host_allocator(xp):
    """Once per process, allocate and free a 31 MB host block.

    glibc's malloc starts with low mmap/trim thresholds and raises them (up to 32 MB / 64
    MB) only when a mapped block that size is freed. Until then the few-MB temporaries of a
    training step are returned to the OS at the end of every step and page-faulted back in
    at the next one (~10k faults, 30-45 ms of kernel time per step of the CIFAR benchmark).
    Freeing one such block raises the thresholds to glibc's own ceiling; no page is touched,
    and with other allocators this is a no-op.
    """
    if not _allocator_primed and xp is np:
        _allocator_primed.append(True)
        np.empty((31 << 20) // 4, dtype=np.float32)   # allocated and freed at once
