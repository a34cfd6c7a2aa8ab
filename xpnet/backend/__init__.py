"""Device choice: the one place in xpnet that knows about NumPy, CuPy and the simulated device.

Every other module asks this one for the array module (``xp``) of a context or of an
array, and moves data between host and device through it. CuPy is imported lazily,
the first time a GPU context is used.

Example::

    ctx = xpnet.gpu(0) if xpnet.num_gpus() else xpnet.cpu()
    xp = ctx.xp                      # numpy or cupy
    y = xp.exp(to_device(host_array, ctx))
"""
import numpy as np

__all__ = ['Context', 'cpu', 'gpu', 'sim', 'num_gpus', 'current_context',
           'get_array_module', 'context_of', 'to_host', 'to_device', 'is_array',
           'scatter_add', 'DeviceError']

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
    underneath, but its arrays refuse to mix with host NumPy arrays, like CuPy's.
    """
    __slots__ = ('device_type', 'device_id', '_xp')
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
            cls._cache[key] = ctx
        return ctx

    def __setattr__(self, name, value):
        if name != '_xp':
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
            else:
                xp = _require_gpu(self.device_id)
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
        """Make this device current for CuPy kernels (no-op for CPU devices)."""
        if self.device_type == 'gpu':
            return self.xp.cuda.Device(self.device_id)
        return _NullDevice()

    def empty_cache(self):
        """Release cached device memory (CuPy memory pool); no-op on CPU."""
        if self.device_type == 'gpu':
            self.xp.get_default_memory_pool().free_all_blocks()


class _NullDevice:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _require_gpu(device_id):
    cupy = _import_cupy()
    if cupy is None:
        raise DeviceError(
            f'gpu({device_id}) was requested but CuPy with a working CUDA device is not '
            f'available ({_cupy_error!r}). Install the GPU extra with '
            '`pip install "xpnet[cuda12]"` on a machine with an NVIDIA GPU, or use xpnet.cpu().')
    count = cupy.cuda.runtime.getDeviceCount()
    if device_id >= count:
        raise DeviceError(f'gpu({device_id}) was requested but only {count} GPU(s) are visible')
    return cupy


def cpu(device_id=0):
    """The CPU context. Several CPU ids are distinct logical devices on the same host."""
    return Context('cpu', device_id)


def gpu(device_id=0):
    """The GPU context ``device_id``.

    Raises :class:`DeviceError` with install instructions when CuPy or a GPU is missing.
    """
    ctx = Context('gpu', device_id)
    ctx.xp  # fail here, at the user's call, rather than at the first computation
    return ctx


def sim(device_id=0):
    """The simulated device (for tests): NumPy arrays that refuse implicit host mixing."""
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
        return sim(0)
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


def to_device(arr, ctx, dtype=None, copy=False):
    """Move ``arr`` (host or device array, or nested lists) to ``ctx`` as an array of ``xp``."""
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
        if ctx.device_type == 'gpu' and isinstance(arr, xp.ndarray) \
                and arr.device.id != ctx.device_id:
            # cupy.asarray keeps an array on its own GPU; copy it to this one (peer copy).
            return xp.array(arr, dtype=dtype, copy=True)
        out = xp.asarray(arr, dtype=dtype)
        if copy and out is arr:
            out = out.copy()
    return out


def scatter_add(xp, target, index, values):
    """``target[index] += values`` with repeated indices accumulated (unbuffered)."""
    if xp is np or not hasattr(xp, 'cuda'):
        xp.add.at(target, index, values)
    else:
        import cupyx
        cupyx.scatter_add(target, index, values)
    return target


# The one explicit opt-in to a process-wide host tuning (glibc's malloc thresholds):
# xpnet.backend.tune_host() or XPNET_TUNE_HOST=1.
from .tune import tune_host  # noqa: E402,F401
from .tune import tune_from_environment as _tune_from_environment  # noqa: E402

_tune_from_environment()
