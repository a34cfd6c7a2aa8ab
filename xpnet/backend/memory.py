"""Reusable host buffers for large temporaries (MXNet's "temp space").

``scratch`` pools the large column matrices of the convolution core, so a training step
does not page-fault fresh ones in every time. It never changes how the C library allocates
memory (``xpnet.backend.tune_host`` is the explicit opt-in for that). A no-op for device
arrays (CuPy has its own memory pool).

Example::

    col = scratch.take(np, (M, K), np.float32)
    ...
    scratch.give(col)
"""
import threading
import weakref

import numpy as np

__all__ = ['scratch']


def _prod(values):
    out = 1
    for v in values:
        out *= int(v)
    return out


class _Scratch:
    """Reusable host buffers for the large column matrices -- MXNet's "temp space" for
    im2col. A fresh column matrix every step is mapped by the C allocator, zero-filled
    through page faults and unmapped again (see ``docs/performance.md``); a buffer handed
    back after the backward pass costs nothing the next time.

    Only NumPy buffers of at least ``min_bytes`` are pooled (smaller ones are recycled by
    the allocator itself; CuPy has its own memory pool). At most ``max_bytes`` are kept.
    Besides the column matrices, the Winograd path's transforms and workspaces and the
    transposed convolution's slabs come from here: without the pool, glibc hands their
    memory back to the OS at the end of every step (it trims the top of its heap) and the
    next step page-faults it in again.
    """

    def __init__(self, min_bytes=1 << 20, max_bytes=1 << 30):
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
