"""The simulated device's runtime: devices, the current device per thread, streams, and the
counters of kernels, host synchronisations and transfers.

This is the ``cupy.cuda`` of :mod:`xpnet.backend.simulated` (``xp.cuda``): ``Device(i)`` is a
context manager and has ``.use()`` and ``.synchronize()``, ``runtime.getDevice()`` /
``setDevice(i)`` read and set the calling thread's current device (0 in every new thread, as
CUDA's), ``Stream`` and ``Event`` are the minimal stand-ins a pipeline needs. The counters
are kept per thread (no lock on the hot path) and summed when read; see
:mod:`xpnet.backend.simulated` for what counts as what.

Example::

    from xpnet.backend import simulated as sim
    with sim.counting(trace=True) as c:
        ...                                   # code running on xpnet.backend.sim(0)
    print(c.kernels, c.syncs, c.htod)
    print(c.report())                         # where the kernels were launched
"""
import collections
import sys
import threading

__all__ = ['DEVICE_COUNT', 'Device', 'runtime', 'Stream', 'Event', 'get_current_stream',
           'get_device_id', 'launch_count', 'sync_count', 'transfer_count', 'reset_counts',
           'counting', 'one_kernel', 'allow_synchronize', 'DeviceSynchronized',
           'CUDARuntimeError']

DEVICE_COUNT = 8
KERNEL, SYNC, HTOD, DTOH, PEER = range(5)
_NKIND = 5
_KIND_NAMES = {'kernel': KERNEL, 'sync': SYNC, 'htod': HTOD, 'dtoh': DTOH, 'peer': PEER}


class CUDARuntimeError(RuntimeError):
    """Raised where the CUDA runtime would fail (e.g. an invalid device ordinal)."""


class DeviceSynchronized(RuntimeError):
    """A host synchronisation happened inside ``allow_synchronize(False)`` (as cupyx's)."""


_registry = []                 # every thread's counter list (summed when read)
_registry_lock = threading.Lock()
_tracers = []                  # active counting(trace=True) scopes


class _Thread(threading.local):
    """Per-thread state: the current device, its streams, its counters."""

    def __init__(self):
        self.dev = 0
        self.stack = []                          # devices saved by Device.__enter__
        self.streams = []                        # streams entered with `with stream:`
        self.fused = 0                           # depth of one_kernel() scopes
        self.allow_sync = True
        self.counts = [0] * (DEVICE_COUNT * _NKIND)
        with _registry_lock:
            _registry.append(self.counts)


_tls = _Thread()


def current():
    """The calling thread's current device id."""
    return _tls.dev


def _check_id(device_id):
    device_id = int(device_id)
    if not 0 <= device_id < DEVICE_COUNT:
        raise CUDARuntimeError(f'cudaErrorInvalidDevice: invalid device ordinal {device_id} '
                               f'(the simulated machine has {DEVICE_COUNT} devices)')
    return device_id


# ---- counting ---------------------------------------------------------------------------------

def count(kind, n=1, name=None, dev=None):
    """Record ``n`` events of ``kind`` on ``dev`` (the current device by default)."""
    t = _tls
    if kind == KERNEL and t.fused:
        return
    if kind == SYNC and not t.allow_sync:
        raise DeviceSynchronized(
            f'simulated device: host synchronisation ({name or "read of a device value"}) '
            'inside allow_synchronize(False)')
    t.counts[(t.dev if dev is None else dev) * _NKIND + kind] += n
    if _tracers:
        _trace(kind, n, name)


def count_kernels(n, name=None):
    """``count(KERNEL, n, name)`` on the current device, the common case made cheap."""
    t = _tls
    if not t.fused:
        t.counts[t.dev * _NKIND] += n
        if _tracers:
            _trace(KERNEL, n, name)


def _trace(kind, n, name):
    frame, here = sys._getframe(2), __name__.rsplit('.', 1)[0]
    while frame is not None and frame.f_globals.get('__name__', '').startswith(here):
        frame = frame.f_back
    site = '?' if frame is None else \
        f'{frame.f_code.co_filename.rsplit("xpnet/", 1)[-1]}:{frame.f_lineno} ' \
        f'({frame.f_code.co_name})'
    for tracer in list(_tracers):
        tracer._record(kind, n, name, site)


def _total(kind, device=None):
    with _registry_lock:
        arrays = list(_registry)
    devices = range(DEVICE_COUNT) if device is None else (_check_id(device),)
    return sum(c[d * _NKIND + kind] for c in arrays for d in devices)


def launch_count(device=None):
    """Kernels launched so far (on ``device``, or on all simulated devices)."""
    return _total(KERNEL, device)


def sync_count(device=None):
    """Host synchronisations so far: reads of device values (``.get()``, ``asnumpy``,
    ``bool()``, ``float()``, ``.item()``, printing, ...) and explicit ``synchronize()``."""
    return _total(SYNC, device)


def transfer_count(kind='htod', device=None):
    """Copies so far: ``'htod'`` (host to device), ``'dtoh'`` (device to host) or ``'peer'``
    (between two simulated devices)."""
    if kind not in ('htod', 'dtoh', 'peer'):
        raise ValueError(f"transfer_count: kind must be 'htod', 'dtoh' or 'peer', got {kind!r}")
    return _total(_KIND_NAMES[kind], device)


def reset_counts():
    """Set every counter of every thread to zero."""
    with _registry_lock:
        for c in _registry:
            c[:] = [0] * len(c)


class counting:
    """Measure a region: ``with counting() as c: ...`` then ``c.kernels``, ``c.syncs``,
    ``c.htod``, ``c.dtoh``, ``c.peer`` (all threads, all simulated devices).

    With ``trace=True`` it also records each event's name and the line of xpnet (or user)
    code that caused it: ``c.by_name`` and ``c.by_site`` are Counters of
    ``(kind, name-or-site)``; ``c.report()`` prints the top entries.
    """

    def __init__(self, trace=False, device=None):
        self.trace = trace
        self.device = device
        self.by_name = collections.Counter()
        self.by_site = collections.Counter()
        self._start = None
        self.kernels = self.syncs = self.htod = self.dtoh = self.peer = 0

    def _snapshot(self):
        return [_total(k, self.device) for k in range(_NKIND)]

    def __enter__(self):
        self._start = self._snapshot()
        if self.trace:
            _tracers.append(self)
        return self

    def __exit__(self, *exc):
        if self.trace:
            _tracers.remove(self)
        end = self._snapshot()
        self.kernels, self.syncs, self.htod, self.dtoh, self.peer = (
            e - s for e, s in zip(end, self._start))
        return False

    def _record(self, kind, n, name, site):
        label = [k for k, v in _KIND_NAMES.items() if v == kind][0]
        self.by_name[(label, name or '?')] += n
        self.by_site[(label, site)] += n

    def report(self, top=25):
        """A readable summary (needs ``trace=True`` for the per-site lines)."""
        lines = [f'kernels {self.kernels}, syncs {self.syncs}, htod {self.htod}, '
                 f'dtoh {self.dtoh}, peer {self.peer}']
        for (kind, site), n in self.by_site.most_common(top):
            lines.append(f'  {n:5d} {kind:6s} {site}')
        return '\n'.join(lines)


class one_kernel:
    """Account everything inside as one kernel launch (on the current device).

    For a NumPy stand-in of a fused GPU kernel (``ElementwiseKernel``/``RawKernel``) that the
    simulated device cannot compile: ``with one_kernel('lstm_step'): ...numpy-path ops...``.
    Syncs and transfers inside still count."""

    def __init__(self, name='fused'):
        self.name = name

    def __enter__(self):
        _tls.fused += 1
        return self

    def __exit__(self, *exc):
        t = _tls
        t.fused -= 1
        if not t.fused and exc[0] is None:
            count(KERNEL, 1, self.name)
        return False


class allow_synchronize:
    """``cupyx.allow_synchronize`` for the simulated device: inside
    ``allow_synchronize(False)`` a host synchronisation raises :class:`DeviceSynchronized`."""

    def __init__(self, allow):
        self.allow = bool(allow)

    def __enter__(self):
        self._prev, _tls.allow_sync = _tls.allow_sync, self.allow
        return self

    def __exit__(self, *exc):
        _tls.allow_sync = self._prev
        return False


# ---- devices ---------------------------------------------------------------------------------

class Device:
    """``cupy.cuda.Device`` of the simulated machine: ``Device()`` is the current device;
    ``with Device(1): ...`` makes device 1 current in this thread and restores the previous
    one on exit; ``Device(1).use()`` switches for good."""
    __slots__ = ('id',)

    def __init__(self, device=None):
        self.id = _tls.dev if device is None else _check_id(device)

    def use(self):
        _tls.dev = self.id

    def __enter__(self):
        t = _tls
        t.stack.append(t.dev)
        t.dev = self.id
        return self

    def __exit__(self, *exc):
        t = _tls
        t.dev = t.stack.pop()
        return False

    def synchronize(self):
        count(SYNC, 1, 'Device.synchronize', dev=self.id)

    @property
    def compute_capability(self):
        return '90'

    def __int__(self):
        return self.id

    def __eq__(self, other):
        return isinstance(other, Device) and other.id == self.id

    def __hash__(self):
        return hash(('simdevice', self.id))

    def __repr__(self):
        return f'<CUDA Device {self.id} (simulated)>'


class _Runtime:
    """``cupy.cuda.runtime`` for the simulated machine (the calls xpnet needs)."""
    CUDARuntimeError = CUDARuntimeError

    @staticmethod
    def getDevice():
        return _tls.dev

    @staticmethod
    def setDevice(device):
        _tls.dev = _check_id(device)

    @staticmethod
    def getDeviceCount():
        return DEVICE_COUNT

    @staticmethod
    def deviceSynchronize():
        count(SYNC, 1, 'deviceSynchronize')

    @staticmethod
    def runtimeGetVersion():
        return 12080

    @staticmethod
    def driverGetVersion():
        return 12080


runtime = _Runtime()


def get_device_id():
    """The current device id (``cupy.cuda.get_device_id``)."""
    return _tls.dev


class Stream:
    """A CUDA stream of the simulated device. Work is eager, so a stream only keeps the
    bookkeeping: ``with stream:`` makes it current, ``synchronize()`` counts a sync."""

    def __init__(self, null=False, non_blocking=False, ptds=False):
        self.device_id = _tls.dev
        self.is_null = bool(null)

    def __enter__(self):
        _tls.streams.append(self)
        return self

    def __exit__(self, *exc):
        _tls.streams.pop()
        return False

    def use(self):
        _tls.streams[:] = [self]
        return self

    def synchronize(self):
        count(SYNC, 1, 'Stream.synchronize', dev=self.device_id)

    def record(self, event=None):
        event = Event() if event is None else event
        event.record(self)
        return event

    def wait_event(self, event):
        pass

    @property
    def done(self):
        return True

    def __repr__(self):
        return f'<Stream {"null" if self.is_null else id(self):#x} (simulated)>'


Stream.null = Stream(null=True)


def get_current_stream():
    """The stream current in this thread (the null stream unless one was entered)."""
    streams = _tls.streams
    return streams[-1] if streams else Stream.null


class Event:
    """A CUDA event of the simulated device (always complete: work is eager)."""

    def __init__(self, block=False, disable_timing=False, interprocess=False):
        self.device_id = _tls.dev

    def record(self, stream=None):
        self.device_id = _tls.dev

    def synchronize(self):
        count(SYNC, 1, 'Event.synchronize', dev=self.device_id)

    @property
    def done(self):
        return True
