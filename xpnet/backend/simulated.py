"""A simulated accelerator for tests: NumPy underneath; CuPy's namespace, devices, gaps and
manners on top; and a count of what a GPU would do.

``xp`` (this module's :data:`xp`) plays the role of ``cupy``. It exposes exactly the public
names of CuPy 14 (``cupy``, ``cupy.linalg``, ``cupy.random``, ``cupy.fft``,
``cupy.lib.stride_tricks``, ``cupyx``, ``cupyx.scipy.special``), read from the CuPy wheel by
``tools/gen_cupy_names.py`` into ``cupy_names.json``: a NumPy-only function, a keyword CuPy's
function lacks (``indices(sparse=True)``, ``sum(where=...)``), a ufunc method CuPy does not
implement (``.at`` only for add, subtract, maximum, minimum and the bitwise ops, each for
the dtypes CuPy's atomics take; ``.reduce``/``.accumulate`` only for add and multiply;
``.reduceat`` only for add) or a ufunc keyword other than ``out``, ``dtype``, ``casting``
fails here as on a GPU. ``ndarray`` methods and attributes are CuPy's too.

Arrays (:class:`SimArray`) refuse to mix with host ``numpy.ndarray`` objects and refuse
implicit conversion to them, where CuPy raises ``TypeError``; host data moves only through
``xp.asarray``/``xp.array`` (host to device) and ``.get()``/``xp.asnumpy`` (device to host).
Index arrays must be device arrays (CuPy would copy a host index array up on every call).

**Devices.** ``xpnet.backend.sim(0)``, ``sim(1)``, ... are separate devices, with a current
device per thread like CUDA's (``xp.cuda.Device(i)``, ``xp.cuda.runtime.getDevice()``; see
:mod:`~xpnet.backend.simdevice`). Every array records its device. A new array is allocated
on the current device. Launching a kernel that reads or writes an array of another device
raises :class:`SimDeviceError` (CuPy raises where the two GPUs have no peer access, and runs
slowly over the link where they have); views (reshape, transpose, basic slicing) are
metadata and work on any device. ``xp.asarray(a)``/``xp.array(a)``/``a.copy()`` of an array
of another device copy it to the current device (a peer copy); ``.get()`` works from any.

**Counting model** (what a GPU would launch; read with :func:`launch_count`,
:func:`sync_count`, :func:`transfer_count`, or :class:`counting` for a region):

- a ufunc call, an arithmetic/comparison operator, an in-place operator: 1 kernel
  (0 when the output is empty); ``ufunc.reduce``/``.accumulate``/``.at``/``.outer``: 1;
  ``add.reduceat``: 9 (CuPy builds it from cumsum, appends, takes and a where);
- a reduction (``sum``, ``mean``, ``max``, ``argmax``, ``all``, ...): 1 per call;
  ``var``/``std``: 2; ``linalg.norm``: 3 (square, sum, sqrt);
- ``zeros``/``ones``/``full``/``arange``/``*_like``: 1; ``empty``/``empty_like``: 0;
  ``eye``/``identity``: 2;
- any other function or method: 1 if it returns a newly allocated array, 0 if it returns a
  view or its input (``reshape`` of a contiguous array, ``transpose``, ``squeeze``,
  ``broadcast_to``, ``split``, ``as_strided``, ``asarray``/``astype`` of an array that
  already fits, ``ascontiguousarray`` of a contiguous one); so a copy, an ``astype``, a
  reshape or ``ascontiguousarray`` of a non-contiguous array is 1; in-place functions
  (``copyto``, ``put``, ``fill``, ``sort``) are 1;
- ``matmul``/``dot``/``tensordot``/``@``: 1 (cuBLAS, batched as one strided call), plus 1
  copy per operand whose last two axes have no unit stride; ``einsum`` of k operands:
  1 if k == 1 else 2k - 1 (CuPy transposes each operand into a contiguous copy);
- ``concatenate``/``stack``/``hstack``/``vstack``: 1 copy per input;
- ``take``, one integer index array (``a[idx]``, ``a[:, idx]``): 1; k > 1 index arrays:
  k + 2; ``take_along_axis``: 2 * ndim + 1 (CuPy builds an index grid); basic indexing: 0;
  assignment ``a[key] = v``: 1 (a fill, a copy or a scatter);
- boolean masks (``a[mask]``, ``a[mask] = v``), ``nonzero``, ``argwhere``,
  ``flatnonzero``, one-argument ``where``, ``compress``: 1 host sync (CuPy reads the
  count back) + 2 kernels; ``unique``: 1 sync + 4; ``bincount``: 2 syncs + 4;
- a device-to-device copy (``copy``, ``array(copy=True)``): 1 kernel on the same device,
  1 ``peer`` transfer between devices;
- ``xp.asarray``/``xp.array`` of host data: 1 ``htod`` transfer, 0 kernels (Python and
  NumPy scalars passed to kernels travel as arguments: 0);
- a host synchronisation (1 ``sync`` + 1 ``dtoh``): ``.get()``, ``xp.asnumpy``,
  ``.item()``, ``.tolist()``, ``bool()``, ``int()``, ``float()``, ``complex()``,
  ``operator.index()`` (an array used as a shape or an index), ``repr``/``str``/``format``
  (printing); ``Device/Stream/Event.synchronize()`` and ``runtime.deviceSynchronize()``
  count 1 sync without a transfer;
- ``xp.random`` draws: 1 per call; ``cupyx.scipy.special`` functions: 1;
  ``xp.fuse``-decorated functions and :class:`one_kernel` regions: 1 in all.

NumPy's floating-point error state (``np.errstate``) still governs the NumPy work underneath;
on a GPU it does nothing (no warnings, no ``FloatingPointError``), so xpnet never relies on
it. These are launches as the host issues them (a cuBLAS call or a CUB sort may run a few
kernels inside; CuPy's scans 1-3): good enough for per-step budgets, not a profiler.
``counting(trace=True)`` attributes every event to the line of code that caused it.

Example::

    from xpnet.backend import simulated, sim
    x = xpnet.nd.ones((4, 4), ctx=sim(1))
    with simulated.counting() as c:
        with sim(1).use():
            y = (x * 2).sum()
    c.kernels, c.syncs            # (2, 0)
"""
import numpy as np

from . import simdevice as _dev
from .simarray import (CUPY_VERSION, SimArray, SimDeviceError, SimTypeError,  # noqa: F401
                       _COSTS, _NAMES, _SYNCS, _UNARY_UFUNC, _VALUE_CHECKS, _Signature,
                       _SimUfunc, _call, _check_sort_kind, _count, _kernels, _new, _not_simulated,
                       _owner, _tls, _unwrap_on, _HTOD, _PEER)
from .simdevice import (DEVICE_COUNT, DeviceSynchronized, allow_synchronize,  # noqa: F401
                        counting, launch_count, one_kernel, reset_counts, sync_count,
                        transfer_count)

__all__ = ['SimArray', 'xp', 'cupyx', 'launch_count', 'sync_count', 'transfer_count',
           'reset_counts', 'counting', 'one_kernel', 'allow_synchronize', 'SimTypeError',
           'SimDeviceError', 'DEVICE_COUNT', 'CUPY_VERSION']


# ---- namespaces -------------------------------------------------------------------------------

def _transfer(name, func, params):
    """``asarray``/``array``/``ascontiguousarray``: host data is copied up (htod), an array
    of another device is copied over (peer), an array of this device passes through (or is
    copied or converted by one kernel)."""
    sig = _Signature(f'cupy.{name}', params)

    def transfer(obj, *args, **kwargs):
        sig.check((obj,) + args, kwargs)
        kwargs.pop('blocking', None)
        dev = _tls.dev
        if type(obj) is SimArray:
            src = obj._a
            if obj._dev != dev:                     # peer copy to the current device
                _count(_PEER, 1, name)
                src = src.copy()
            out = func(src, *args, **kwargs)
            if out is obj._a:
                return obj
            if out is not src and _owner(out) is not _owner(obj._a):
                _kernels(1, name)            # a copy or a dtype conversion
            return _new(out, obj._dev if _owner(out) is _owner(obj._a) else dev)
        if isinstance(obj, (list, tuple)) and _holds_device(obj):
            _kernels(1, name)
            return _new(func(_unwrap_on(obj, dev, name), *args, **kwargs), dev)
        host = obj.copy() if isinstance(obj, np.ndarray) else np.array(obj, copy=True)
        _count(_HTOD, 1, name)
        return _new(np.asarray(func(host, *args, **kwargs)), dev)
    transfer.__name__ = name
    return transfer


def _holds_device(seq):
    return any(type(o) is SimArray or (isinstance(o, (list, tuple)) and _holds_device(o))
               for o in seq)


def _asnumpy(a, stream=None, order='C', out=None, blocking=True):
    if type(a) is SimArray:
        return a.get(order=order, out=out)
    return np.asarray(a, order=order)


def _get_array_module(*args):
    return xp if any(type(a) is SimArray for a in args) else np


def _fuse(*args, **kwargs):
    """``cupy.fuse``: on the simulated device the Python function runs as it is and counts
    as one kernel (CuPy compiles its elementwise body into one)."""
    def decorate(fn):
        def fused(*a, **k):
            with one_kernel(getattr(fn, '__name__', 'fused')):
                return fn(*a, **k)
        fused.__name__ = getattr(fn, '__name__', 'fused')
        return fused
    if len(args) == 1 and callable(args[0]) and not kwargs:
        return decorate(args[0])
    return decorate


class _MemoryPool:
    """``cupy.get_default_memory_pool()``: NumPy allocates; the pool holds nothing."""

    def free_all_blocks(self, stream=None):
        pass

    def used_bytes(self):
        return 0

    def total_bytes(self):
        return 0

    def n_free_blocks(self):
        return 0


_POOL = _MemoryPool()


class _KernelStub:
    """``ElementwiseKernel``/``ReductionKernel``/``RawKernel``/``RawModule``: CUDA source
    cannot run on the simulated device; keep a NumPy path beside the kernel and account it
    with ``simulated.one_kernel``."""

    def __init__(self, *args, **kwargs):
        raise NotImplementedError(
            f'{type(self).__name__}: the simulated device cannot run CUDA source; branch on '
            'backend.is_cupy(xp) and run the NumPy path inside simulated.one_kernel()')


_STUB_TYPES = {n: type(n, (_KernelStub,), {}) for n in
               ('ElementwiseKernel', 'ReductionKernel', 'RawKernel', 'RawModule')}

_ALIASES = {'alltrue': 'all', 'sometrue': 'any', 'cumproduct': 'cumprod', 'product': 'prod',
            'round_': 'round', 'in1d': 'isin', 'trapz': 'trapezoid', 'row_stack': 'vstack'}
_CONSTANTS = {'Inf': np.inf, 'Infinity': np.inf, 'PINF': np.inf, 'infty': np.inf,
              'NINF': -np.inf, 'NAN': np.nan, 'NaN': np.nan, 'NZERO': -0.0, 'PZERO': 0.0,
              'float_': np.float64, 'complex_': np.complex128, 'cfloat': np.complex128,
              'singlecomplex': np.complex64}


def _numpy_attr(source, name):
    for mod in (source, np.exceptions):
        if hasattr(mod, name):
            return getattr(mod, name)
    alias = _ALIASES.get(name)
    return getattr(np, alias) if alias else None


class _SimModule:
    """A namespace with exactly the names of one CuPy module (see ``cupy_names.json``)."""

    def __init__(self, path, source, special=None):
        self.__name__ = path
        self._path = path
        self._source = source
        self._entries = _NAMES['namespaces'][path]
        self._special = special or {}

    def __repr__(self):
        return f'<simulated module {self._path!r} (CuPy {CUPY_VERSION} names)>'

    def __dir__(self):
        return sorted(self._entries)

    def __getattr__(self, name):
        entry = self._entries.get(name)
        if entry is None or name.startswith('__'):
            raise AttributeError(
                f"module {self._path!r} has no attribute {name!r} (the simulated device "
                f"offers CuPy {CUPY_VERSION}'s names only: a NumPy-only name fails on a GPU)")
        value = self._make(name, entry)
        self.__dict__[name] = value        # later lookups skip __getattr__
        return value

    def _ufunc(self, name):
        entry = self._entries.get(name)
        return getattr(self, name) if entry and entry['kind'] == 'ufunc' else None

    def _make(self, name, entry):
        if name in self._special:
            return self._special[name]
        kind = entry['kind']
        label = name if self._path == 'cupy' else f'{self._path.split(".", 1)[1]}.{name}'
        if kind == 'ufunc':
            func = getattr(self._source, name, None)
            if func is None:
                return _not_simulated(f'{self._path}.{name}')
            return _SimUfunc(name, func, _NAMES['ufuncs'].get(name, _UNARY_UFUNC))
        if kind == 'constant':
            return _CONSTANTS.get(name, getattr(self._source, name, None))
        if kind == 'type':
            value = _STUB_TYPES.get(name) or _CONSTANTS.get(name) or \
                _numpy_attr(self._source, name)
            return value if value is not None else _not_simulated(f'{self._path}.{name}')
        if kind == 'module':
            return _not_simulated(f'{self._path}.{name}')
        func = _numpy_attr(self._source, name)
        if func is None:
            return _not_simulated(f'{self._path}.{name}')
        return _function(label, f'{self._path}.{name}', func, entry['params'])


def _function(label, qualname, func, params):
    sig = _Signature(qualname, params)
    cost, syncs = _COSTS.get(label), _SYNCS.get(label, 0)
    check = _VALUE_CHECKS.get(label)

    def call(*args, **kwargs):
        sig.check(args, kwargs)
        if check:
            _check_sort_kind(label, args, kwargs, check)
        return _call(label, func, args, kwargs, cost, syncs)
    call.__name__ = label.rsplit('.', 1)[-1]
    call.__qualname__ = qualname
    return call


class _SimRandom(_SimModule):
    """``cupy.random``: draws from a RandomState private to the simulated device (never
    NumPy's global one); CuPy's ``dtype=`` keyword is honoured."""

    def __init__(self):
        super().__init__('cupy.random', np.random)
        self._state = np.random.RandomState(0)
        self._special = {'seed': self._seed, 'get_random_state': lambda: self._state,
                         'reset_states': lambda: self._seed(0)}

    def _seed(self, seed=None):
        self._state.seed(seed)

    def _make(self, name, entry):
        if entry['kind'] == 'type':       # generator classes: not simulated
            return _not_simulated(f'cupy.random.{name}')
        if name in self._special or entry['kind'] != 'function':
            return super()._make(name, entry)
        method = getattr(self._state, name, None)
        if method is None:
            return _not_simulated(f'cupy.random.{name}')
        sig = _Signature(f'cupy.random.{name}', entry['params'])
        label = f'random.{name}'

        def draw(*args, **kwargs):
            sig.check(args, kwargs)
            dtype = kwargs.pop('dtype', None)
            out = _call(label, method, args, kwargs, _COSTS.get(label, 1))
            if dtype is not None and type(out) is SimArray and out.dtype != np.dtype(dtype):
                out._a = out._a.astype(dtype)
            return out
        return draw


class _SimCuda:
    """``cupy.cuda`` of the simulated machine (the names xpnet needs; see simdevice)."""
    Device = _dev.Device
    Stream = _dev.Stream
    Event = _dev.Event
    runtime = _dev.runtime
    get_current_stream = staticmethod(_dev.get_current_stream)
    get_device_id = staticmethod(_dev.get_device_id)
    is_available = staticmethod(lambda: True)

    def __getattr__(self, name):
        if name in _NAMES['name_only']['cupy.cuda']:
            raise NotImplementedError(f'cupy.cuda.{name} is not simulated')
        raise AttributeError(f"module 'cupy.cuda' has no attribute {name!r}")


def _erf_kernel(x):
    from .special import erf_rational
    return erf_rational(np, x)


def _rsqrt(x):
    return 1.0 / np.sqrt(x)


class SimPinnedMemory(bytearray):
    """The stand-in for CuPy's pinned host memory (``backend.pinned.is_pinned`` knows it)."""


def _pinned(like):
    """``cupyx.empty_pinned``/``zeros_pinned`` (``like=False``) and their ``*_like_pinned``
    forms: NumPy arrays over a :class:`SimPinnedMemory` buffer (zero-filled, as pages are)."""
    def alloc(shape_or_array, dtype=None, order='C', subok=None, shape=None):
        if like:
            a = np.asarray(shape_or_array)
            shape = a.shape if shape is None else shape
            dtype = a.dtype if dtype is None else dtype
            order = 'C' if order in ('K', 'A') else order
        else:
            shape, dtype = shape_or_array, float if dtype is None else dtype
        shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
        dtype = np.dtype(dtype)
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        return np.ndarray(shape, dtype=dtype, buffer=SimPinnedMemory(max(nbytes, 1)),
                          order=order)
    return alloc


class _ErrState:
    """``cupyx.errstate`` (linalg error handling): accepted and ignored."""

    def __init__(self, **kwargs):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _build():
    lib = _SimModule('cupy.lib', np.lib, {
        'stride_tricks': _SimModule('cupy.lib.stride_tricks', np.lib.stride_tricks)})
    special_np = type('special_source', (), {'erf': staticmethod(_erf_kernel)})
    special = _SimModule('cupyx.scipy.special', special_np)
    scipy = type('scipy', (), {'special': special})()
    nothing = type('nothing', (), {})
    cupyx_ns = _SimModule('cupyx', nothing, {
        'scipy': scipy, 'allow_synchronize': allow_synchronize,
        'DeviceSynchronized': DeviceSynchronized, 'errstate': _ErrState,
        'rsqrt': _SimUfunc('rsqrt', _rsqrt, _UNARY_UFUNC),
        'scatter_add': lambda a, i, v: a.scatter_add(i, v),
        'scatter_max': lambda a, i, v: a.scatter_max(i, v),
        'scatter_min': lambda a, i, v: a.scatter_min(i, v),
        'empty_pinned': _pinned(False), 'zeros_pinned': _pinned(False),
        'empty_like_pinned': _pinned(True), 'zeros_like_pinned': _pinned(True),
    })
    top = _SimModule('cupy', np, {
        'ndarray': SimArray, 'ufunc': _SimUfunc, 'cuda': _SimCuda(),
        'linalg': _SimModule('cupy.linalg', np.linalg), 'fft': _SimModule('cupy.fft', np.fft),
        'random': _SimRandom(), 'lib': lib,
        'asnumpy': _asnumpy, 'get_array_module': _get_array_module, 'fuse': _fuse,
        'get_default_memory_pool': lambda: _POOL,
        'get_default_pinned_memory_pool': lambda: _POOL, 'is_available': lambda: True,
    })
    for name in ('asarray', 'array', 'ascontiguousarray', 'asanyarray', 'asfortranarray'):
        top._special[name] = _transfer(name, getattr(np, name),
                                       _NAMES['namespaces']['cupy'][name]['params'])
    return top, cupyx_ns


xp, cupyx = _build()
MODULES_BY_NUMPY_NAME = {'numpy': xp, 'numpy.linalg': xp.linalg, 'numpy.fft': xp.fft}
