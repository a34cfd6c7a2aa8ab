"""Checks of input data that cost no extra host synchronisation on a device.

A check of host (NumPy) data raises at once. A check of device data (CuPy, the simulated
device) cannot look at its result without waiting for the device, so
:func:`device_assert` keeps the failure flag *on the device* instead, in a per-thread,
per-device registry, and :func:`flush_device_checks` raises at the next point where xpnet
reads data back to the host anyway (``NDArray.asnumpy()``/``item()``/``float()``, a
metric's ``get()``, a checkpoint). All flags pending on one device are read together, with
one transfer.
The cost on a device is one kernel per check (fused kernels write straight into the
pending flag, see :func:`device_flag`; a generic check costs the comparison, ``any`` and an
OR) and nothing else; the error surfaces at most one read-back late, naming what was
wrong. A pending flag may be an int32 holding a number (e.g. the first batch with a
non-finite loss); its message may be a function of that number.

Example::

    check_labels(label_array, num_classes, 'SoftmaxCrossEntropyLoss')  # raises now on CPU
    ...
    loss.asnumpy()          # on a device: raises the ValueError here if a label was bad
"""
import threading

import numpy as np

from . import context_of, get_array_module, to_host

__all__ = ['device_assert', 'device_flag', 'flush_device_checks', 'pending_device_checks',
           'read_back', 'check_labels']

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
    if flag is None or flag is bad:
        pending[key] = bad
    elif flag.dtype == bad.dtype:
        flag |= bad                  # the registry's own array (never the caller's)
    else:
        pending[key] = flag | bad


def device_flag(ctx, message, error=ValueError):
    """The int32 0-d pending flag of ``(ctx, error, message)`` on device ``ctx``, created
    (zero) if there is none: a fused kernel sets it to non-zero to report a failure,
    which the next :func:`flush_device_checks` raises as ``error(message)`` (or
    ``error(message(value))`` when ``message`` is callable). One kernel (the zeros) per
    read-back period, none per check."""
    key = (ctx, error, message)
    pending = _pending()
    flag = pending.get(key)
    if flag is None or flag.dtype != np.int32:
        with ctx.use():
            new = ctx.xp.zeros((), dtype=np.int32)
            if flag is not None:
                new |= flag
        flag = pending[key] = new
    return flag


def _raise(error, message, value):
    raise error(message(int(value)) if callable(message) else message)


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
            failed = to_host(xp.stack([flag.reshape(()).astype(np.int32)
                                       for _, _, flag in checks]))
        for (error, message, _), bad in zip(checks, failed):
            if bad:
                _raise(error, message, bad)


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
        flags = xp.stack([flag.reshape(()).astype(np.int32) for _, flag in mine])
        both = to_host(xp.concatenate([flat, flags.view(xp.uint8)]))
    flush_device_checks()                      # other devices' flags, if any
    values = both[flat.size:].copy().view(np.int32)
    for ((_, error, message), _), bad in zip(mine, values):
        if bad:
            _raise(error, message, bad)
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
    if not isinstance(labels, np.ndarray) and _check_on_device(labels, num_classes, what,
                                                               ignore_label):
        return
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


def _check_on_device(labels, num_classes, what, ignore_label):
    """:func:`check_labels` of a device array as one fused kernel writing its pending
    flag; False when no fused kernel takes these labels."""
    from . import kernels
    from .kernels.checks import LABEL_DTYPES, mark_bad_labels
    xp = get_array_module(labels)
    if not kernels.fused(xp) or labels.dtype not in LABEL_DTYPES:
        return False
    where = f'[0, {num_classes})' if num_classes is not None else '[0, inf)'
    message = (f'{what}: labels must be whole class indices in {where} (found when the '
               'batch was read back)')
    ctx = context_of(labels)
    mark_bad_labels(xp, labels, num_classes, device_flag(ctx, message, ValueError),
                    ignore_label)
    return True
