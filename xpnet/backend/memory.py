"""Reusable host memory for the large arrays of xpnet's ops (MXNet's "temp space").

A training step allocates the same large arrays every time: column matrices, Winograd
transforms, layer outputs, the gradients flowing back. Taken from the C allocator, they are
handed back to the OS when freed (glibc trims the top of its heap and unmaps large blocks)
and page-faulted in again, zero-filled, at the next step: thousands of faults and
milliseconds of kernel time per step (``docs/performance.md``). xpnet never changes how the
C library allocates (``xpnet.backend.tune_host`` is the explicit opt-in for that); instead
its host ops take their large arrays from :data:`scratch`, which keeps the memory.

An array from :meth:`_Pool.empty` is an ordinary NumPy array, a view of one of the pool's
blocks. The block is free again as soon as no array refers to it any more (its reference
count says so): nothing needs to be handed back, so the arrays may be returned to the user,
kept by the autograd graph or bound to a Parameter as its gradient, and they are reused
only once all of those are gone. Blocks come in size classes (eight per power of two), so
the arrays of a step find the blocks of the previous step. Free blocks beyond ``max_bytes``
in all go back to the C allocator (``XPNET_HOST_POOL_MB``, default 1024; ``0`` turns the
pool off); :meth:`_Pool.clear` drops every free block. Device
arrays (CuPy has its own memory pool) and small arrays are allocated as usual.

Example::

    col = scratch.empty(np, (M, K), np.float32)      # reused at the next step
    y = scratch.empty_like(x)
"""
import os
import sys
import threading

import numpy as np

__all__ = ['scratch', 'owns_memory']

# Blocks start at a multiple of this many bytes (a cache line; AVX-512 loads).
_ALIGN = 64


def _prod(values):
    out = 1
    for v in values:
        out *= int(v)
    return out


def _size_class(nbytes):
    """``nbytes`` rounded up to its size class: eight classes per power of two, in
    multiples of 4 KB (at most 12.5% of a block unused)."""
    step = max(1 << max((nbytes - 1).bit_length() - 3, 0), 4096)
    return -(-nbytes // step) * step


class _Block:
    """One pooled allocation: ``raw`` owns the memory, ``data`` is its aligned part. Every
    array handed out is a view whose base is ``raw``."""
    __slots__ = ('raw', 'data', 'nbytes')

    def __init__(self, nbytes):
        self.raw = np.empty(nbytes + _ALIGN, dtype=np.uint8)
        offset = -self.raw.ctypes.data % _ALIGN
        self.data = self.raw[offset:offset + nbytes]
        self.nbytes = nbytes


# References to a free block's ``raw``: the block's own attribute, ``data``'s base, and the
# argument of sys.getrefcount.
_FREE_REFS = 3


def _is_free(block):
    return sys.getrefcount(block.raw) <= _FREE_REFS


def owns_memory(a):
    """Whether no other array shares ``a``'s memory: ``a`` owns its data (``a.base is
    None``), or it is the only array viewing a pool block (the autograd engine then binds it
    as a gradient instead of copying it)."""
    if a.base is None:
        return True
    # references to a pool block's ``raw``: the block's attribute, ``data``'s base, ``a``,
    # and the argument of sys.getrefcount
    return type(a) is np.ndarray and id(a.base) in scratch._raw_ids and \
        sys.getrefcount(a.base) <= _FREE_REFS + 1


class _Pool:
    """Host arrays of at least ``min_bytes`` from reusable blocks; see the module
    docstring. At most ``max_bytes`` of free blocks are kept."""

    def __init__(self, min_bytes=1 << 18, max_bytes=1 << 30):
        self.min_bytes, self.max_bytes = min_bytes, max_bytes
        self._blocks = {}          # size class -> [_Block], oldest first
        self._raw_ids = set()      # id() of every block's ``raw`` (see owns_memory)
        self._lock = threading.Lock()

    def empty(self, xp, shape, dtype):
        """An uninitialized array of ``shape``/``dtype`` (C order), from the pool when it
        is a large host array."""
        dtype = np.dtype(dtype)
        if type(shape) is not tuple:
            shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
        nbytes = _prod(shape) * dtype.itemsize
        if xp is not np or nbytes < self.min_bytes or not self.max_bytes:
            return xp.empty(shape, dtype=dtype)
        size = _size_class(nbytes)
        with self._lock:
            block = self._free_block(size)
            if block is None:
                self._trim(size)
                block = _Block(size)
                self._blocks.setdefault(size, []).append(block)
                self._raw_ids.add(id(block.raw))
            # (a view made under the lock: no other caller can find the block free now)
            return block.data[:nbytes].view(dtype).reshape(shape)

    def zeros(self, xp, shape, dtype):
        """Like :meth:`empty`, filled with zeros."""
        out = self.empty(xp, shape, dtype)
        out.fill(0)
        return out

    def empty_like(self, a, dtype=None):
        """An uninitialized array of ``a``'s shape (and dtype, unless given) with its axes
        laid out in memory in ``a``'s order (NumPy's ``order='K'``: a channels-last
        buffer seen channels-first stays channels-last)."""
        xp = _module_of(a)
        dtype = a.dtype if dtype is None else dtype
        if xp is not np or a.ndim < 2 or a.flags.c_contiguous:
            return self.empty(xp, a.shape, dtype)
        order = sorted(range(a.ndim), key=lambda i: -a.strides[i])
        buf = self.empty(xp, tuple(a.shape[i] for i in order), dtype)
        return buf.transpose(np.argsort(order))

    def contiguous(self, xp, a):
        """``a`` itself when C-contiguous, else a copy of it in a pooled array."""
        if xp is not np or a.flags.c_contiguous:
            return xp.ascontiguousarray(a)
        out = self.empty(xp, a.shape, a.dtype)
        np.copyto(out, a)
        return out

    def _free_block(self, size):
        for block in self._blocks.get(size, ()):
            if _is_free(block):
                return block
        return None

    def _trim(self, adding):
        """Drop free blocks, oldest first, until at most ``max_bytes`` (with ``adding``
        more) are held in free blocks."""
        free = [(size, b) for size, blocks in self._blocks.items() for b in blocks
                if _is_free(b)]
        excess = sum(size for size, _ in free) + adding - self.max_bytes
        for size, block in free:
            if excess <= 0:
                break
            self._blocks[size].remove(block)
            self._raw_ids.discard(id(block.raw))
            excess -= size

    def clear(self):
        """Drop every free block (blocks still in use stay until their arrays are gone)."""
        with self._lock:
            for size in list(self._blocks):
                kept = [b for b in self._blocks[size] if not _is_free(b)]
                for b in self._blocks[size]:
                    if not any(b is k for k in kept):
                        self._raw_ids.discard(id(b.raw))
                if kept:
                    self._blocks[size] = kept
                else:
                    del self._blocks[size]

    def stats(self):
        """``{'blocks', 'bytes', 'free_blocks', 'free_bytes'}`` of the memory held."""
        with self._lock:
            blocks = [b for bs in self._blocks.values() for b in bs]
            free = [b for b in blocks if _is_free(b)]
        return {'blocks': len(blocks), 'bytes': sum(b.nbytes for b in blocks),
                'free_blocks': len(free), 'free_bytes': sum(b.nbytes for b in free)}

    def _after_fork_in_child(self):
        self._lock = threading.Lock()


def _module_of(a):
    if type(a) is np.ndarray:
        return np
    from . import get_array_module
    return get_array_module(a)


def _max_bytes_from_environment():
    """``XPNET_HOST_POOL_MB``: how many MB of free blocks the pool keeps (default 1024;
    ``0`` turns pooling off: every array comes from ``numpy.empty``)."""
    value = os.environ.get('XPNET_HOST_POOL_MB', '').strip()
    if not value:
        return 1 << 30
    try:
        mb = int(value)
    except ValueError:
        mb = -1
    if mb < 0:
        raise ValueError(f'XPNET_HOST_POOL_MB must be a whole number of MB >= 0, got {value!r}')
    return mb << 20


scratch = _Pool(max_bytes=_max_bytes_from_environment())

if hasattr(os, 'register_at_fork'):
    os.register_at_fork(after_in_child=scratch._after_fork_in_child)
