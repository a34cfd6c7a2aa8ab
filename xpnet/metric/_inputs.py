"""Input handling shared by the metrics: lists of per-device arrays, host copies, and the
selections (arg-max, the label's probability) made on the prediction's device first."""
import functools

import numpy

from ..backend import context_of, get_array_module, is_array, run_on, to_device, to_host
from ..backend.checks import check_labels, flush_device_checks
from ..ndarray import NDArray

__all__ = ['check_label_shapes']


def _as_list(x):
    if isinstance(x, (list, tuple)):
        return list(x)
    return [x]


def _pairs(labels, preds, name, flush=True):
    """Lists of labels and predictions of equal length (one entry per device).

    A metric update on the host reads data back, so failed device checks surface here
    first (``flush``); an update that stays on the device passes ``flush=False``.
    """
    if flush:
        flush_device_checks()
    labels, preds = _as_list(labels), _as_list(preds)
    if len(labels) != len(preds):
        raise ValueError(f'{name}: got {len(labels)} label array(s) but {len(preds)} '
                         'prediction array(s); pass one of each per device')
    return zip(labels, preds)


def _device(x):
    """``(data, xp)``: the array and its array module, without copying."""
    if isinstance(x, NDArray):
        return x._data, x.xp
    if is_array(x):
        return x, get_array_module(x)
    return numpy.asarray(x), numpy


def _host(x):
    """A host ``numpy.ndarray`` view or copy of ``x``; never modify it in place."""
    if isinstance(x, NDArray):
        return to_host(x._data)
    if is_array(x):
        return to_host(x)
    return numpy.asarray(x)


def _like(x, data, xp):
    """``x`` on the device of ``data`` (array module ``xp``)."""
    d, xpx = _device(x)
    if xpx is xp:
        return d
    if xp is numpy:
        return to_host(d)
    return to_device(d, context_of(data))


def _rows(pred_data, xp, axis, name):
    """The prediction as ``(rows, classes)`` with the class axis last."""
    if pred_data.ndim == 0:
        raise ValueError(f'{name}: predictions need a class axis, got a scalar')
    axis = axis % pred_data.ndim
    if axis != pred_data.ndim - 1:
        pred_data = xp.moveaxis(pred_data, axis, -1)
    return pred_data.reshape(-1, pred_data.shape[-1])


def _pick_host(pred, label, axis, name, ignore_label=None):
    """The probability of each row's label, selected on the prediction's device.

    Labels must be class indices of the prediction (except those equal to
    ``ignore_label``, whose probability is arbitrary). Returns ``(probs, label)`` as
    float64 / original-dtype host vectors, one entry per row.
    """
    pd, xp = _device(pred)
    p2 = _rows(pd, xp, axis, name)
    lab_full = _host(label)
    lab_host = lab_full.reshape(-1)
    m, c = p2.shape
    if lab_host.size != m:
        raise ValueError(f'{name}: label shape {tuple(lab_full.shape)} does not match '
                         f'prediction shape {tuple(pd.shape)}: expected {m} labels, one per '
                         f'row of {c} class scores')
    check_labels(lab_host, c, name, ignore_label)
    if xp is numpy:
        idx = lab_host.astype(numpy.int64)
    else:
        idx = _like(label, pd, xp).reshape(-1).astype(numpy.int64)
    if ignore_label is not None:
        xp.clip(idx, 0, c - 1, out=idx)         # ignored positions may hold any value
    probs = p2[xp.arange(m), idx]
    return to_host(probs).astype(numpy.float64), lab_host


def _on_device(xp):
    """True for a device array module (CuPy, the simulated device): the update stays there."""
    return xp is not numpy


def _device_label(label, pd, xp):
    """The label as a device array on the prediction's device (bool labels as int8, as
    the checks read them)."""
    lab = _like(label, pd, xp)
    return lab.astype(numpy.int8) if lab.dtype.kind == 'b' else lab


def _label_flag(ctx, name, classes):
    """The pending device flag of bad labels for metric ``name`` (see check_labels)."""
    from ..backend.checks import device_flag
    where = f'[0, {classes})' if classes is not None else '[0, inf)'
    return device_flag(ctx, f'{name}: labels must be whole class indices in {where} (found '
                       'when the metric was read back)', ValueError)


def check_label_shapes(labels, preds, wrap=False, shape=False):
    """Raise ``ValueError`` if the counts (or, with ``shape=True``, the shapes) differ.

    With ``wrap=True`` a single array is wrapped into a list. Returns ``(labels, preds)``.
    """
    if not shape:
        a, b = len(labels), len(preds)
    else:
        a, b = tuple(labels.shape), tuple(preds.shape)
    if a != b:
        raise ValueError(f'Shape of labels {a} does not match shape of predictions {b}')
    if wrap:
        labels, preds = _as_list(labels), _as_list(preds)
    return labels, preds


def _num(v):
    """A JSON-friendly Python number (NumPy scalars are converted)."""
    return v.item() if isinstance(v, numpy.generic) else v


def _on_preds_device(update):
    """Run a metric's ``update(labels, preds)`` on its predictions' device (CuPy launches
    kernels on the thread's current device); pair by pair when they span several devices."""
    @functools.wraps(update)
    def placed(self, labels, preds):
        plist = preds if isinstance(preds, (list, tuple)) else [preds]
        ctxs = {c for c in map(_device_context, plist) if c is not None}
        if not ctxs:
            return update(self, labels, preds)
        llist = labels if isinstance(labels, (list, tuple)) else [labels] * len(plist)
        if len(ctxs) == 1 or len(llist) != len(plist):
            return run_on(next(iter(ctxs)), update, self, labels, preds)
        for label, pred in zip(llist, plist):
            ctx = _device_context(pred)
            if ctx is None:
                update(self, [label], [pred])
            else:
                run_on(ctx, update, self, [label], [pred])
    return placed


def _device_context(x):
    """The device (not CPU) context of an NDArray or device array, else None."""
    if isinstance(x, NDArray):
        return x._ctx if x._ctx.device_type != 'cpu' else None
    if is_array(x) and not isinstance(x, numpy.ndarray):
        return context_of(x)
    return None
