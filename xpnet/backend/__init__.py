"""Device choice: the one place in xpnet that knows about NumPy, CuPy and the simulated device.

Every other module asks this one for the array module (``xp``) of a context or of an
array, and moves data between host and device through it. CuPy is imported lazily,
the first time a GPU context is used.

Example::

    ctx = xpnet.gpu(0) if xpnet.num_gpus() else xpnet.cpu()
    xp = ctx.xp                      # numpy or cupy
    y = xp.exp(to_device(host_array, ctx))
"""
import os

import numpy as np

__all__ = ['Context', 'cpu', 'gpu', 'sim', 'num_gpus', 'current_context',
           'get_array_module', 'context_of', 'to_host', 'to_device', 'is_array', 'is_cupy',
           'cupyx_of', 'run_on', 'DeviceSwitch', 'scatter_add', 'set_deterministic', 'is_deterministic', 'DeviceError']

_cupy = None          # the cupy module once imported; False if unavailable
_cupy_error = None


class DeviceError(RuntimeError):
    """A device was asked for that this machine cannot provide."""


def _import_cupy():
    global _cupy, _cupy_error
    if _cupy is None:
        try:
            import cupy
            cupy.cuda.runtime.getDeviceCount()
            _cupy = cupy
        except Exception as err:   # ImportError, or CUDA present but no device/driver
            _cupy, _cupy_error = False, err
    return _cupy or None


def num_gpus():
    """Number of GPUs visible to CuPy (0 when CuPy is not installed)."""
    cupy = _import_cupy()
    if cupy is None:
        return 0
    try:
        return cupy.cuda.runtime.getDeviceCount()
    except Exception:
        return 0


class Context:
    """A device: ``Context('cpu', 0)``, ``Context('gpu', 1)``.

    Contexts compare equal by value and are interned, so ``cpu(0) is cpu(0)``.
    ``.xp`` is the array module that computes on this device.

    The device type ``'sim'`` is the simulated device used by the test-suite: NumPy
    underneath, CuPy's namespace, devices and host/device rules on top (see
    :mod:`xpnet.backend.simulated`).

    A GPU (or simulated) device runs kernels only while it is the thread's current device:
    ``with ctx.use(): ...``. ``_rt`` is the runtime that reads and sets the current device
    (``getDevice``/``setDevice``): None for the CPU, so the per-op check is one attribute read.
    """
    __slots__ = ('device_type', 'device_id', '_xp', '_rt')
    _cache = {}
    devtype2id = {'cpu': 1, 'gpu': 2, 'sim': 7}

    def __new__(cls, device_type, device_id=0):
        if isinstance(device_type, Context):
            return device_type
        key = (device_type, int(device_id))
        ctx = cls._cache.get(key)
        if ctx is None:
            if device_type not in cls.devtype2id:
                raise ValueError(f"unknown device type {device_type!r}; expected 'cpu' or 'gpu'")
            if int(device_id) < 0:
                raise ValueError(f"device_id must be >= 0, got {device_id}")
            ctx = object.__new__(cls)
            object.__setattr__(ctx, 'device_type', device_type)
            object.__setattr__(ctx, 'device_id', int(device_id))
            object.__setattr__(ctx, '_xp', None)
            object.__setattr__(ctx, '_rt', None if device_type == 'cpu' else _UNRESOLVED)
            cls._cache[key] = ctx
        return ctx

    def __setattr__(self, name, value):
        if name not in ('_xp', '_rt'):
            raise AttributeError('Context is immutable')
        object.__setattr__(self, name, value)

    def __reduce__(self):
        return (Context, (self.device_type, self.device_id))

    @property
    def xp(self):
        """The array module of this device (``numpy``, ``cupy`` or the simulated module)."""
        xp = self._xp
        if xp is None:
            if self.device_type == 'cpu':
                xp = np
            elif self.device_type == 'sim':
                from . import simulated
                xp = simulated.xp
                _check_sim_id(self.device_id)
            else:
                xp = _require_gpu(self.device_id)
            self._rt = None if xp is np else xp.cuda.runtime
            self._xp = xp
        return xp

    def __eq__(self, other):
        return isinstance(other, Context) and self.device_type == other.device_type \
            and self.device_id == other.device_id

    def __hash__(self):
        return hash((self.device_type, self.device_id))

    def __repr__(self):
        return f'{self.device_type}({self.device_id})'

    __str__ = __repr__

    def use(self):
        """A context manager making this device the thread's current one (CuPy and the
        simulated device launch kernels on the current device); a no-op for the CPU.

        Example::

            with ctx.use():
                y = ctx.xp.exp(x)
        """
        if self._rt is None:
            return _NULL_DEVICE
        return self.xp.cuda.Device(self.device_id)

    def empty_cache(self):
        """Release cached device memory (CuPy memory pool); no-op on CPU."""
        if self.device_type == 'gpu':
            self.xp.get_default_memory_pool().free_all_blocks()


class _NullDevice:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


_NULL_DEVICE = _NullDevice()


class _Unresolved:
    """``Context._rt`` until the context's array module is first asked for."""


_UNRESOLVED = _Unresolved()


def _check_sim_id(device_id):
    from .simdevice import DEVICE_COUNT
    if device_id >= DEVICE_COUNT:
        raise DeviceError(f'sim({device_id}) was requested but the simulated machine has '
                          f'{DEVICE_COUNT} devices')


def _install_hint():
    """How to install CuPy for this xpnet: the command for a source checkout (an editable
    install beside pyproject.toml) or for an installed package."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    if os.path.exists(os.path.join(root, 'pyproject.toml')):
        cmd12, cmd13 = 'pip install -e ".[cuda12]"', 'pip install -e ".[cuda13]"'
        where = f' (run in {root})'
    else:
        cmd12, cmd13 = 'pip install "xpnet[cuda12]"', 'pip install "xpnet[cuda13]"'
        where = ''
    return (f'Install the GPU extra that matches the CUDA version of the NVIDIA driver (the '
            f'"CUDA Version" nvidia-smi prints): `{cmd12}` for CUDA 12.x or `{cmd13}` for '
            f'CUDA 13.x{where}.')


def _require_gpu(device_id):
    cupy = _import_cupy()
    if cupy is None:
        if isinstance(_cupy_error, ImportError):
            why = 'CuPy is not installed'
        else:
            why = (f'CuPy is installed but cannot use a GPU ({type(_cupy_error).__name__}: '
                   f'{_cupy_error}); check the driver with nvidia-smi and that the CuPy '
                   'package matches its CUDA version')
        raise DeviceError(f'gpu({device_id}) needs CuPy and a working CUDA device: {why}. '
                          f'{_install_hint()} Or use xpnet.cpu().')
    count = cupy.cuda.runtime.getDeviceCount()
    if device_id >= count:
        raise DeviceError(f'gpu({device_id}) was requested but only {count} GPU(s) are visible')
    return cupy


def cpu(device_id=0):
    """The CPU context. Several CPU ids are distinct logical devices on the same host."""
    return Context('cpu', device_id)


def gpu(device_id=0):
    """The GPU context ``device_id``.

    Like MXNet, building the context needs no GPU; its first use (creating an array on it,
    asking for ``ctx.xp``) raises :class:`DeviceError` with install instructions when CuPy
    or the GPU is missing.
    """
    return Context('gpu', device_id)


def sim(device_id=0):
    """Simulated device ``device_id`` (for tests): CuPy's namespace and device rules on
    NumPy, with kernel and sync counters (see :mod:`xpnet.backend.simulated`)."""
    return Context('sim', device_id)


_default_ctx = [Context('cpu', 0)]


def current_context():
    """The default context used when none is given (``cpu(0)``)."""
    return _default_ctx[-1]


def is_array(obj):
    """True if ``obj`` is an array of any backend (NumPy, CuPy or simulated)."""
    if isinstance(obj, np.ndarray):
        return True
    from . import simulated
    if isinstance(obj, simulated.SimArray):
        return True
    cupy = _cupy or None
    return cupy is not None and isinstance(obj, cupy.ndarray)


def get_array_module(arr):
    """The array module an array belongs to (``numpy``, ``cupy`` or the simulated one)."""
    if isinstance(arr, np.ndarray):
        return np
    from . import simulated
    if isinstance(arr, simulated.SimArray):
        return simulated.xp
    if _cupy:
        return _cupy.get_array_module(arr)
    return np


def context_of(arr):
    """The device an array lives on (for device arrays of unknown origin)."""
    if isinstance(arr, np.ndarray):
        return cpu(0)
    from . import simulated
    if isinstance(arr, simulated.SimArray):
        return sim(arr._dev)
    if _cupy and isinstance(arr, _cupy.ndarray):
        return Context('gpu', arr.device.id)
    return cpu(0)


def to_host(arr):
    """Copy a device array to a host ``numpy.ndarray`` (no copy for a host array)."""
    if isinstance(arr, np.ndarray):
        return arr
    if hasattr(arr, 'get'):
        return arr.get()
    return np.asarray(arr)


def run_on(ctx, fn, /, *args, **kwargs):
    """``fn(*args, **kwargs)`` with ``ctx``'s device current in this thread (CuPy and the
    simulated device launch kernels on the current device); the previous device is current
    again afterwards. Costs an attribute read on the CPU, a ``getDevice`` on a device, and
    a switch there and back only when another device is current."""
    rt = ctx._rt
    if rt is None:
        return fn(*args, **kwargs)
    if rt is _UNRESOLVED:
        ctx.xp
        rt = ctx._rt
    dev = ctx.device_id
    prev = rt.getDevice()
    if prev == dev:
        return fn(*args, **kwargs)
    rt.setDevice(dev)
    try:
        return fn(*args, **kwargs)
    finally:
        rt.setDevice(prev)


class DeviceSwitch:
    """Follow work from device to device within one pass: ``to(ctx)`` makes ``ctx``'s
    device current (cheaply: nothing happens when ``ctx`` is the last one, or a CPU);
    ``restore()`` makes current again what was current before the first switch.

    Example::

        place = DeviceSwitch()
        try:
            for node in nodes:
                place.to(node.ctx)
                node.run()
        finally:
            place.restore()
    """
    __slots__ = ('ctx', '_saved')

    def __init__(self):
        self.ctx = None
        self._saved = None       # runtime -> the device current before the first switch

    def to(self, ctx):
        if ctx is self.ctx or ctx is None:
            return
        self.ctx = ctx
        rt = ctx._rt
        if rt is None:
            return
        if rt is _UNRESOLVED:
            ctx.xp
            rt = ctx._rt
        if self._saved is None:
            self._saved = {}
        if rt not in self._saved:
            self._saved[rt] = rt.getDevice()
        rt.setDevice(ctx.device_id)

    def restore(self):
        if self._saved:
            for rt, dev in self._saved.items():
                rt.setDevice(dev)
            self._saved = None
        self.ctx = None


def to_device(arr, ctx, dtype=None, copy=False):
    """Move ``arr`` (host or device array, or nested lists) to ``ctx`` as an array of ``xp``.

    On a GPU the copy runs under ``ctx``'s device; an array of another GPU is copied over
    (CuPy's ``asarray`` does that for an array of another device)."""
    xp = ctx.xp
    if xp is np:
        if not isinstance(arr, np.ndarray):
            arr = to_host(arr) if is_array(arr) else np.asarray(arr, dtype=dtype)
        if dtype is not None and arr.dtype != dtype:
            return arr.astype(dtype)
        return arr.copy() if copy else arr
    if is_array(arr) and get_array_module(arr) is not xp:
        arr = to_host(arr)
    with ctx.use():
        if copy:
            return xp.array(arr, dtype=dtype, copy=True)
        return xp.asarray(arr, dtype=dtype)


def is_cupy(xp):
    """True if ``xp`` is CuPy itself (not NumPy, not the simulated device)."""
    return xp is not np and _cupy is not None and xp is _cupy


def cupyx_of(xp):
    """The ``cupyx`` namespace of a device array module (CuPy's, or the simulated device's),
    None for NumPy."""
    if xp is np:
        return None
    if is_cupy(xp):
        import cupyx
        return cupyx
    from . import simulated
    return simulated.cupyx if xp is simulated.xp else None


_deterministic = [os.environ.get('XPNET_DETERMINISTIC', '') not in ('', '0')]


def set_deterministic(flag=True):
    """Make device ``scatter_add`` (the gradient of gathers: embedding, take, indexing)
    deterministic; returns the previous setting. Also ``XPNET_DETERMINISTIC=1``.

    CuPy's ``add.at`` accumulates with float atomics, whose order changes from run to run,
    so the rounding of the sums does. The deterministic path sorts the (position, value)
    pairs into one canonical order and sums them as float64 segment sums: the same
    result, bit for bit, every run and for any order of the inputs; slower (two sorts).
    The CPU path (``numpy.add.at``) is always deterministic."""
    prev, _deterministic[0] = _deterministic[0], bool(flag)
    return prev


def is_deterministic():
    """Whether device ``scatter_add`` uses the deterministic path (see set_deterministic)."""
    return _deterministic[0]


def scatter_add(xp, target, index, values):
    """``target[index] += values`` with repeated indices accumulated (unbuffered).

    On the CPU this is ``numpy.add.at`` (sequential, deterministic). On a GPU it is
    ``cupy.add.at``, whose float atomics make the sums' rounding depend on thread timing:
    not reproducible bit for bit. :func:`set_deterministic` (or ``XPNET_DETERMINISTIC=1``)
    routes it through a sort and segment sums instead.

    Args:
        xp: the array module of ``target``.
        target: the array to add into (modified in place, and returned).
        index: anything ``target[index]`` accepts (integer arrays, slices, tuples).
        values: broadcastable to ``target[index]``.
    """
    if xp is np:
        np.add.at(target, index, values)
    elif _deterministic[0]:
        _scatter_add_sorted(xp, target, index, values)
    else:
        xp.add.at(target, index, values)
    return target


def _scatter_add_sorted(xp, target, index, values):
    """Deterministic scatter-add: canonical (position, value) order, float64 segment sums."""
    pos = xp.arange(target.size).reshape(target.shape)[index]
    acc = np.float64 if target.dtype.kind == 'f' else np.int64
    vals = xp.broadcast_to(xp.asarray(values), pos.shape).astype(acc).reshape(-1)
    pos = pos.reshape(-1)
    by_value = xp.argsort(vals, kind='stable')          # ties of equal values stay put
    order = by_value[xp.argsort(pos[by_value], kind='stable')]
    pos, vals = pos[order], vals[order]
    csum = xp.concatenate([xp.zeros(1, dtype=acc), xp.cumsum(vals)])
    cells = xp.arange(target.size)
    seg = csum[xp.searchsorted(pos, cells, side='right')] - \
        csum[xp.searchsorted(pos, cells, side='left')]
    target += seg.reshape(target.shape).astype(target.dtype)


# The one explicit opt-in to a process-wide host tuning (glibc's malloc thresholds):
# xpnet.backend.tune_host() or XPNET_TUNE_HOST=1.
from .tune import tune_host  # noqa: E402,F401
from .tune import tune_from_environment as _tune_from_environment  # noqa: E402

_tune_from_environment()
