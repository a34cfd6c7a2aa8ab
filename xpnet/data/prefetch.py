"""One batch ahead on the device: host-to-device copies on a side stream, overlapping the
current batch's training.

:func:`prefetch_to_devices` iterates over a loader and, while the consumer works on batch
k, has batch k+1's ``data`` and ``label`` (the first two fields) already copied to the
devices: split along ``batch_axis`` over ``ctx_list`` exactly as
:func:`xpnet.utils.split_and_load` would, each slice copied once to its device with
``ndarray.set(host, stream=side)`` on a non-blocking stream of that device. An event
recorded after the copies is waited on by the consumer's (current) stream before batch
k+1 is handed out, so kernels that read it run after its copy, without the host waiting.
From page-locked memory (``DataLoader(pin_memory=True)``) the copy is a DMA that overlaps
everything; from ordinary memory the driver stages it and the host thread waits for that
part.

The batches it yields are the loader's (host NDArrays, as handlers expect to see them),
whose two fields also carry their device slices; ``split_and_load`` with the same
contexts, ``batch_axis`` and ``even_split`` returns those instead of copying again.

Details that keep it correct:

- the device buffers are allocated on the consumer's stream, and the side stream first
  waits for the work queued there so far (the memory pool may hand out a block that queued
  kernels still read);
- the host arrays stay referenced until their copy's event has completed (a pinned block
  returned to CuPy's pool too early could be overwritten while the DMA reads it);
- an xpnet ``DataLoader``'s position (``state_dict()``) counts only the batches handed out,
  not the one read ahead.

CPU contexts copy nothing ahead: on the CPU "loading" a batch is wrapping it. Batches
whose fields are not host arrays pass through unchanged.

Example::

    for batch in prefetch_to_devices(loader, [xpnet.gpu(0), xpnet.gpu(1)]):
        data = split_and_load(batch[0], [xpnet.gpu(0), xpnet.gpu(1)])   # no copy here
"""
import collections

import numpy as np

from ..backend import Context
from ..ndarray import NDArray, _wrap
from ..utils import _check_split, _section_bounds, _slice

__all__ = ['prefetch_to_devices']

_FIELDS = 2          # data and label: what BatchProcessor loads


def prefetches(ctx_list):
    """True if batches for ``ctx_list`` are worth copying ahead (every context a device)."""
    return bool(ctx_list) and all(Context(c).device_type != 'cpu' for c in ctx_list)


def prefetch_to_devices(batches, ctx_list, batch_axis=0, even_split=True):
    """Yield the batches of ``batches`` with the next one's data and label already on their
    way to the devices of ``ctx_list`` (see the module docstring).

    Args:
        batches: a DataLoader or any iterable of ``(data, label, ...)`` batches.
        ctx_list: a Context or a list of them (device contexts; CPU ones are passed
            through without copies).
        batch_axis, even_split: how the batch is split over ``ctx_list``, as
            ``split_and_load``.
    """
    ctx_list = [Context(c) for c in (ctx_list if isinstance(ctx_list, (list, tuple))
                                     else [ctx_list])]
    if not prefetches(ctx_list):
        yield from batches
        return
    stages = [_Stage(ctx) for ctx in ctx_list]
    key = (tuple(ctx_list), batch_axis, even_split)
    it = iter(batches)
    inflight = collections.deque()           # (events, host arrays) of unfinished copies
    try:
        nxt = _start(next(it, _END), stages, key, inflight)
        while nxt is not _END:
            current, events = nxt
            nxt = _start(next(it, _END), stages, key, inflight)
            _read_ahead(it, 0 if nxt is _END else 1)
            for stage, event in zip(stages, events):
                stage.wait(event)
            _release_done(inflight)
            yield current
    finally:     # a batch read ahead and never handed out stays uncounted (see _read_ahead)
        close = getattr(it, 'close', None)
        if close is not None and it is not batches:
            close()


_END = object()


def _read_ahead(it, n):
    """Tell an xpnet DataLoader iterator that ``n`` batches were read but not handed out."""
    hold = getattr(it, '_read_ahead', None)
    if hold is not None:
        hold(n)


def _start(batch, stages, key, inflight):
    """Start copying ``batch``'s data and label to the devices: ``(batch with the device
    slices attached, events)``; ``_END`` passes through."""
    if batch is _END:
        return _END
    if not isinstance(batch, (list, tuple)):
        return batch, [None] * len(stages)
    fields = list(batch)
    hosts = []
    for f in range(min(_FIELDS, len(fields))):
        host = _host_array(fields[f])
        if host is None:
            continue
        parts = _split(host, len(stages), key[1], key[2])
        if parts is None:
            continue
        copies = []
        for stage, part in zip(stages, parts):
            device, source = stage.copy(part)
            copies.append(device)
            hosts.append(source)
        fields[f] = _attach(fields[f], key, copies)
    if not hosts:
        return batch, [None] * len(stages)
    events = [stage.record() for stage in stages]
    inflight.append((events, hosts))
    return (type(batch)(fields) if isinstance(batch, tuple) else fields), events


def _host_array(field):
    """The host array behind a batch field that split_and_load would copy, as float32 where
    it would convert; None for anything else."""
    if isinstance(field, NDArray):
        if field.context.device_type != 'cpu':
            return None
        host = field._data
    elif isinstance(field, np.ndarray):
        host = field
    else:
        return None
    if host.dtype.kind in 'fc' and host.dtype != np.float32:
        host = host.astype(np.float32)
    return host


def _split(host, parts, batch_axis, even_split):
    """The slices split_and_load makes; None where it would raise (it then raises when the
    batch is used, not a batch early)."""
    if parts == 1:
        return [host]
    try:
        size = _check_split(tuple(host.shape), parts, batch_axis, even_split)
    except ValueError:
        return None
    return [host[_slice(host.ndim, batch_axis, s, e)] for s, e in _section_bounds(size, parts)]


def _release_done(inflight):
    """Drop host arrays whose copies have completed (a query; it never waits)."""
    while inflight and all(e is None or e.done for e in inflight[0][0]):
        inflight.popleft()


class _Preloaded(NDArray):
    """A host NDArray batch field that also carries its slices on the devices (read by
    ``split_and_load``)."""
    __slots__ = ('_device_copies',)

    def __init__(self, field, key, copies):     # pylint: disable=super-init-not-called
        self._data, self._ctx = field._data, field._ctx
        self._node, self._oidx, self._grad = None, 0, None
        self._grad_req, self._fresh_grad = 'null', False
        self._device_copies = (key, copies)


class _PreloadedHost(np.ndarray):
    """The same for a NumPy batch field (a view of it)."""


def _attach(field, key, copies):
    """``field`` carrying ``copies``, its slices on the devices of ``key``."""
    if isinstance(field, NDArray):
        return _Preloaded(field, key, copies)
    view = field.view(_PreloadedHost)
    view._device_copies = (key, copies)
    return view


class _Stage:
    """The copy stream of one device."""

    def __init__(self, ctx):
        self.ctx = ctx
        self.xp = ctx.xp
        with ctx.use():
            self.stream = self.xp.cuda.Stream(non_blocking=True)
        self._ordered = False      # the side stream waited for the consumer's queued work

    def copy(self, host):
        """``(NDArray, source)``: ``host`` copied to this device on the side stream, and the
        (contiguous) host array the copy reads, to keep until it is done."""
        xp, ctx = self.xp, self.ctx
        host = np.ascontiguousarray(host)
        with ctx.use():
            out = xp.empty(host.shape, dtype=host.dtype)     # on the consumer's stream
            if not self._ordered:
                self.stream.wait_event(xp.cuda.get_current_stream().record())
                self._ordered = True
            out.set(host, stream=self.stream)
        return _wrap(out, ctx), host

    def record(self):
        """An event after the copies issued since the last one."""
        with self.ctx.use():
            event = self.stream.record()
        self._ordered = False
        return event

    def wait(self, event):
        """Make the consumer's current stream wait for ``event`` (no host wait)."""
        if event is not None:
            with self.ctx.use():
                self.xp.cuda.get_current_stream().wait_event(event)

