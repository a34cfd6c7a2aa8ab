"""Checks of input data that cost no extra host synchronisation on a device.

A check of host (NumPy) data raises at once. A check of device data (CuPy, the simulated
device) cannot look at its result without waiting for the device, so
:func:`device_assert` keeps the failure flag *on the device* instead, in a per-thread,
per-device registry, and :func:`flush_device_checks` raises at the next point where xpnet
reads data back to the host anyway (``NDArray.asnumpy()``/``item()``/``float()``, every
metric ``update``). All flags pending on one device are read together, with one transfer.
The cost on a device is a few small kernels per check (the comparison, ``any`` and an OR
into the pending flag) and nothing else; the error surfaces at most one read-back late,
naming what was wrong.

Example::

    check_labels(label_array, num_classes, 'SoftmaxCrossEntropyLoss')  # raises now on CPU
    ...
    loss.asnumpy()          # on a device: raises the ValueError here if a label was bad
"""
import threading

import numpy as np

from . import context_of, get_array_module, to_host

__all__ = ['device_assert', 'flush_device_checks', 'pending_device_checks', 'read_back',
           'check_labels']

_local = threading.local()


def _pending():
    pending = getattr(_local, 'pending', None)
    if pending is None:
        pending = _local.pending = {}
    return pending


def device_assert(bad, message, error=ValueError):
    """Raise ``error(message)`` if ``bad`` (a boolean scalar or 0-d array) is true.

    A host flag is checked at once. A device flag is OR-ed into the pending flag of
    ``(device, error, message)`` and raised by the next :func:`flush_device_checks` in
    this thread; repeated checks with the same message keep one flag, so the registry stays
    small however long nothing is read back.
    """
    if isinstance(bad, (bool, np.bool_, np.ndarray)):
        if bad:
            raise error(message)
        return
    key = (context_of(bad), error, message)
    pending = _pending()
    flag = pending.get(key)
    pending[key] = bad if flag is None else flag | bad


def pending_device_checks():
    """How many device checks of this thread wait for the next read-back."""
    return len(getattr(_local, 'pending', None) or ())


def flush_device_checks():
    """Raise the first failed pending device check of this thread (and forget them all).

    Called where xpnet reads back from a device anyway; the flags of each device are
    stacked and copied to the host in one transfer.
    """
    pending = getattr(_local, 'pending', None)
    if not pending:
        return
    _local.pending = {}
    by_device = {}
    for (ctx, error, message), flag in pending.items():
        by_device.setdefault(ctx, []).append((error, message, flag))
    for ctx, checks in by_device.items():
        xp = get_array_module(checks[0][2])
        with ctx.use():
            failed = to_host(xp.stack([flag.reshape(()) for _, _, flag in checks]))
        for (error, message, _), bad in zip(checks, failed):
            if bad:
                raise error(message)


# Up to this size a read-back carries the pending flags of its device in the same transfer
# (one synchronisation instead of two); a larger array is not copied again on the device.
_COMBINE_BYTES = 1 << 20


def read_back(data):
    """A host copy of the array ``data`` that also raises the failed pending checks of
    this thread: for a small device array, its bytes and its device's pending flags come
    back in one transfer (one synchronisation, not two)."""
    pending = getattr(_local, 'pending', None)
    if isinstance(data, np.ndarray) or not pending or data.nbytes > _COMBINE_BYTES:
        flush_device_checks()
        return data.copy() if isinstance(data, np.ndarray) else to_host(data)
    ctx = context_of(data)
    mine = [(key, flag) for key, flag in pending.items() if key[0] == ctx]
    if not mine:
        flush_device_checks()
        return to_host(data)
    for key, _ in mine:
        del pending[key]
    xp = get_array_module(data)
    with ctx.use():
        flat = xp.ascontiguousarray(data).reshape(-1).view(xp.uint8)
        flags = xp.stack([flag.reshape(()) for _, flag in mine]).astype(xp.uint8)
        both = to_host(xp.concatenate([flat, flags]))
    flush_device_checks()                      # other devices' flags, if any
    for ((_, error, message), _), bad in zip(mine, both[flat.size:]):
        if bad:
            raise error(message)
    return both[:flat.size].view(data.dtype).reshape(data.shape)


def check_labels(labels, num_classes, what, ignore_label=None):
    """Raise ``ValueError`` unless every label is a whole class index in
    ``[0, num_classes)`` (just ``>= 0`` when ``num_classes`` is None).

    Negative, too large, fractional and NaN labels fail; positions equal to
    ``ignore_label`` are not checked. Host labels are checked at once (the message shows a
    bad value); device labels through :func:`device_assert` (no synchronisation).

    Args:
        labels: a host or device array (not an NDArray) of int, float or bool labels.
        num_classes: the number of classes, or None.
        what: who checks, for the message (e.g. ``'SoftmaxCrossEntropyLoss'``).
        ignore_label: a label value that marks positions to skip.
    """
    if labels.size == 0:
        return
    if labels.dtype.kind == 'b':
        labels = labels.astype(np.int8)
    kind = labels.dtype.kind
    if kind in 'iu':
        bad = labels < 0 if kind == 'i' else None
        if num_classes is not None:
            bad = labels >= num_classes if bad is None else bad | (labels >= num_classes)
    elif kind == 'f':
        xp = get_array_module(labels)
        bad = ~(labels >= 0) | (labels != xp.floor(labels))      # NaN fails both
        if num_classes is not None:
            bad |= labels >= num_classes
    else:
        raise TypeError(f'{what}: labels must be numbers, got dtype {labels.dtype}')
    if bad is None:
        return
    if ignore_label is not None:
        bad &= labels != ignore_label
    where = f'[0, {num_classes})' if num_classes is not None else '[0, inf)'
    message = f'{what}: labels must be whole class indices in {where}'
    flag = bad.any()
    if isinstance(labels, np.ndarray):
        if flag:
            raise ValueError(f'{message}, got {labels[bad][0].item()!r}')
        return
    device_assert(flag, message + ' (found when the batch was read back)')
