"""Page-locked ("pinned") host memory: what makes a host-to-device copy asynchronous.

A copy from ordinary (pageable) host memory makes the CUDA driver stage it through a
pinned buffer of its own while the calling thread waits; from pinned memory the copy is a
DMA the thread only enqueues. CuPy allocates pinned arrays with ``cupyx.empty_pinned``
(from its pinned memory pool); the simulated device has a stand-in whose arrays
:func:`is_pinned` recognises, so the pinned path is tested without a GPU. On a machine
without a GPU there is nothing to pin for: :func:`pinned_allocator` gives None.

Example::

    alloc = pinned_allocator(0)          # gpu(0)'s driver pins the memory; None without one
    host = alloc((64, 784), np.float32) if alloc else np.empty((64, 784), np.float32)
"""
import numpy as np

from . import Context, cupyx_of, num_gpus

__all__ = ['pinned_allocator', 'is_pinned']


def pinned_allocator(device=0, check_only=False):
    """``alloc(shape, dtype) -> numpy.ndarray`` in pinned memory for copies to ``device``, or
    None where pinning does nothing (a CPU context, or no GPU on this machine).

    Args:
        device: a GPU ordinal (Gluon's ``pin_device_id``; None when this machine has no
            such GPU) or a Context (``gpu(i)``, ``cpu()``, or ``sim(i)``: the simulated
            device's pinned stand-in).
        check_only: only check ``device`` (raising ``ValueError``), touching no device.
    """
    if isinstance(device, Context):
        ctx = device
        if check_only or ctx.device_type == 'cpu':
            return None
    else:
        if isinstance(device, bool) or not isinstance(device, (int, np.integer)) or device < 0:
            raise ValueError(f'pin_device_id must be a GPU ordinal (an int >= 0) or a '
                             f'Context, got {device!r}')
        if check_only or int(device) >= num_gpus():
            return None
        ctx = Context('gpu', int(device))
    cupyx = cupyx_of(ctx.xp)

    def alloc(shape, dtype):
        with ctx.use():             # CUDA registers the pages with this device's context
            return cupyx.empty_pinned(shape, dtype=dtype)
    return alloc


def is_pinned(arr):
    """True if the NumPy array ``arr`` lives in pinned memory (CuPy's or the simulated
    device's stand-in)."""
    if not isinstance(arr, np.ndarray):
        return False
    base = arr.base
    while base is not None:
        if type(base).__name__ in _PINNED_TYPES:
            return True
        base = getattr(base, 'base', None)
    return False


# cupy.cuda.PinnedMemoryPointer (cupyx.empty_pinned's buffer); the simulated stand-in
_PINNED_TYPES = frozenset({'PinnedMemoryPointer', 'SimPinnedMemory'})
