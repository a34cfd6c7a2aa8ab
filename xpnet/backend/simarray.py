"""The arrays of the simulated device: :class:`SimArray`, its ufuncs, and the machinery that
runs a NumPy function on device arrays while checking CuPy's signatures and device rules and
counting kernels, syncs and transfers. The cost model and the rules are described in
:mod:`xpnet.backend.simulated`, which builds the ``cupy``-like namespaces on top of this.
"""
import json
import operator
import os
import warnings

import numpy as np

from . import simdevice as _dev

__all__ = ['SimArray', 'SimTypeError', 'SimDeviceError', 'CUPY_VERSION']

with open(os.path.join(os.path.dirname(__file__), 'cupy_names.json')) as _f:
    _NAMES = json.load(_f)
CUPY_VERSION = _NAMES['cupy_version']
_UFUNC_KW = frozenset(_NAMES['ufunc_keywords'])
_METHOD_PARAMS = _NAMES['ndarray']['methods']
_ATTRIBUTES = frozenset(_NAMES['ndarray']['attributes'])
_KERNEL, _SYNC, _HTOD, _DTOH, _PEER = (_dev.KERNEL, _dev.SYNC, _dev.HTOD, _dev.DTOH,
                                       _dev.PEER)
_count = _dev.count
_kernels = _dev.count_kernels
_tls = _dev._tls
_new_obj = object.__new__
_UNSUPPORTED_KINDS = 'OSUVMm'     # object, strings, void, datetimes: CuPy has no such arrays


class SimTypeError(TypeError):
    """Raised where CuPy would refuse to mix device and host arrays."""


class SimDeviceError(ValueError):
    """A kernel would read or write an array of another device than the current one."""


def _refuse(obj):
    raise SimTypeError(
        f'simulated device: a host numpy.ndarray (shape {obj.shape}, {obj.dtype}) was mixed '
        'with a device array; move it with xp.asarray() first (CuPy raises here too)')


def _wrong_device(label, array_dev, current):
    raise SimDeviceError(
        f'simulated device: {label} would launch a kernel on sim({current}) (the current '
        f'device) with an array that lives on sim({array_dev}); run it under its data\'s '
        f'device (with ctx.use(): ...). CuPy fails the same way without peer access.')


# ---- arrays in and out ---------------------------------------------------------------------

def _owner(a):
    """The object owning ``a``'s memory (``a`` itself for an array that owns its data)."""
    b = a.base
    if b is None:
        return a
    while b is not None:
        a = b
        b = getattr(b, 'base', None)
    return a


def _unwrap_in(obj, owners):
    """SimArrays -> their ndarrays, recording each one's memory owner and device in
    ``owners``; refuse host ndarrays; recurse into lists/tuples/dicts."""
    t = type(obj)
    if t is SimArray:
        a = obj._a
        owners[id(_owner(a))] = obj._dev
        return a
    if t is tuple or t is list:
        return t([_unwrap_in(o, owners) for o in obj])
    if t is dict:
        return {k: _unwrap_in(v, owners) for k, v in obj.items()}
    if isinstance(obj, np.ndarray):
        _refuse(obj)
    return obj


def _unwrap_on(obj, dev, label):
    """Like :func:`_unwrap_in` for kernels: every array must live on ``dev``."""
    t = type(obj)
    if t is SimArray:
        if obj._dev != dev:
            _wrong_device(label, obj._dev, dev)
        return obj._a
    if t is tuple or t is list:
        return t([_unwrap_on(o, dev, label) for o in obj])
    if isinstance(obj, np.ndarray):
        _refuse(obj)
    return obj


def _new(a, dev):
    if a.dtype.kind in _UNSUPPORTED_KINDS:
        raise SimTypeError(f'simulated device: CuPy has no arrays of dtype {a.dtype}')
    s = _new_obj(SimArray)
    s._a = a
    s._dev = dev
    return s


def _wrap_out(out, owners, dev):
    """Results -> SimArrays: a view lives where its memory does, a new array on ``dev``."""
    t = type(out)
    if t is np.ndarray:
        return _new(out, owners.get(id(_owner(out)), dev) if out.base is not None else dev)
    if isinstance(out, np.generic):       # CuPy returns 0-d arrays where NumPy gives scalars
        return _new(np.asarray(out), dev)
    if isinstance(out, (tuple, list)):
        items = [_wrap_out(o, owners, dev) for o in out]
        return type(out)(*items) if hasattr(out, '_fields') else type(out)(items)
    return out


def _new_arrays(out, owners):
    """1 if ``out`` holds a newly allocated array (not a view of an input), else 0."""
    if isinstance(out, np.ndarray):
        return 0 if id(_owner(out)) in owners else 1
    if isinstance(out, np.generic):
        return 1
    if isinstance(out, (tuple, list)):
        return 1 if any(_new_arrays(o, owners) for o in out) else 0
    return 0


def _unwrap_args(args, owners):
    """:func:`_unwrap_in` for an argument tuple, with a fast path for plain arguments."""
    out = []
    for o in args:
        t = type(o)
        if t is SimArray:
            a = o._a
            owners[id(a if a.base is None else _owner(a))] = o._dev
            out.append(a)
        elif t is tuple or t is list or t is dict or isinstance(o, np.ndarray):
            out.append(_unwrap_in(o, owners))
        else:
            out.append(o)
    return out


def _call(label, func, args, kwargs, cost=None, syncs=0):
    """Run a NumPy function on device arrays and account it (see the module docstring)."""
    dev = _tls.dev
    owners = {}
    ua = _unwrap_args(args, owners)
    uk = dict(zip(kwargs, _unwrap_args(kwargs.values(), owners))) if kwargs else {}
    out = func(*ua, **uk)
    if cost is None:
        n = _new_arrays(out, owners)
    elif callable(cost):
        n = cost(ua, uk, out)
        if type(n) is tuple:
            n, syncs = n
    else:
        n = cost
    if n or syncs:
        for d in owners.values():
            if d != dev:
                _wrong_device(label, d, dev)
        if syncs:
            _count(_SYNC, syncs, label)
            _count(_DTOH, syncs, label)
        if n:
            _kernels(n, label)
    return _wrap_out(out, owners, dev)


# ---- signatures --------------------------------------------------------------------------------

class _Signature:
    """The parameters of a CuPy function, for the checks CuPy's own call would fail."""
    __slots__ = ('label', 'npos', 'varpos', 'keywords', 'varkw', 'required_pos', 'required_kw')

    def __init__(self, label, params):
        self.label = label
        self.npos, self.varpos, self.varkw = 0, False, False
        self.keywords, self.required_pos, self.required_kw = set(), [], set()
        if params is None:
            self.varpos = self.varkw = True
            return
        pos_only = params.index('/') if '/' in params else 0   # entries before '/'
        positional = True
        for i, p in enumerate(params):
            if p == '/':
                continue
            if p == '*':
                positional = False
                continue
            if p.startswith('**'):
                self.varkw = True
                continue
            if p.startswith('*'):
                self.varpos, positional = True, False
                continue
            name, has_default = p.rstrip('='), p.endswith('=')
            if positional:
                self.npos += 1
                if not has_default:
                    self.required_pos.append(name)
            elif not has_default:
                self.required_kw.add(name)
            if i >= pos_only:
                self.keywords.add(name)

    def check(self, args, kwargs):
        if len(args) > self.npos and not self.varpos:
            raise TypeError(f'{self.label}() takes at most {self.npos} positional arguments '
                            f'({len(args)} given) in CuPy {CUPY_VERSION}')
        if kwargs and not self.varkw:
            bad = [k for k in kwargs if k not in self.keywords]
            if bad:
                raise TypeError(f'{self.label}() got an unexpected keyword argument '
                                f'{bad[0]!r}: CuPy {CUPY_VERSION} has no such parameter')
        if len(args) < len(self.required_pos):
            missing = [n for n in self.required_pos[len(args):] if n not in kwargs]
            if missing:
                raise TypeError(f'{self.label}() missing required argument {missing[0]!r} '
                                f'(CuPy {CUPY_VERSION} gives it no default)')
        for name in self.required_kw:
            if name not in kwargs:
                raise TypeError(f'{self.label}() missing keyword argument {name!r}')


# ---- costs (see the module docstring) ---------------------------------------------------------

def _n_sequence(ua, uk, out):
    seq = ua[0] if ua else uk.get('tup', ())
    return max(len(seq), 1)


def _gemm_ready(a):
    """cuBLAS takes a matrix whose last two axes have a unit stride on one of them."""
    if a.ndim < 2 or a.flags.c_contiguous or a.flags.f_contiguous:
        return True
    if a.ndim > 2:
        return a.swapaxes(-1, -2).flags.c_contiguous
    s, item = a.strides, a.itemsize
    return s[-1] == item or s[-2] == item


def _matmul_cost(ua, uk, out):
    return 1 + sum(1 for a in ua[:2] if isinstance(a, np.ndarray) and not _gemm_ready(a))


def _einsum_cost(ua, uk, out):
    k = sum(1 for a in ua if isinstance(a, np.ndarray))
    return 1 if k <= 1 else 2 * k - 1


def _take_along_cost(ua, uk, out):
    ndim = ua[0].ndim
    return 1 if ndim <= 1 else 2 * ndim + 1


def _where_cost(ua, uk, out):
    return 1 if len(ua) + len(uk) > 1 else (2, 1)


_COSTS = {
    'empty': 0, 'empty_like': 0, 'eye': 2, 'identity': 2,
    'concatenate': _n_sequence, 'stack': _n_sequence, 'hstack': _n_sequence,
    'vstack': _n_sequence, 'row_stack': _n_sequence, 'column_stack': _n_sequence,
    'dstack': _n_sequence,
    'matmul': _matmul_cost, 'dot': _matmul_cost, 'inner': _matmul_cost,
    'tensordot': _matmul_cost, 'ndarray.dot': _matmul_cost, 'einsum': _einsum_cost,
    'var': 2, 'std': 2, 'nanvar': 2, 'nanstd': 2, 'ndarray.var': 2, 'ndarray.std': 2,
    'average': 2, 'median': 3, 'percentile': 3, 'quantile': 3, 'linalg.norm': 3,
    'take_along_axis': _take_along_cost, 'where': _where_cost, 'pad': 2,
    'nonzero': 2, 'argwhere': 2, 'flatnonzero': 2, 'compress': 2, 'extract': 2,
    'ndarray.nonzero': 2, 'ndarray.compress': 2, 'unique': 4, 'bincount': 4,
    'allclose': 1, 'array_equal': 2,
    'copyto': 1, 'put': 1, 'place': 1, 'putmask': 1, 'fill_diagonal': 1, 'put_along_axis': 2,
    'ndarray.fill': 1, 'ndarray.sort': 1, 'ndarray.partition': 1, 'ndarray.put': 1,
    'random.shuffle': 1,
}
_SYNCS = {'nonzero': 1, 'argwhere': 1, 'flatnonzero': 1, 'compress': 1, 'extract': 1,
          'ndarray.nonzero': 1, 'ndarray.compress': 1, 'unique': 1, 'bincount': 2,
          'allclose': 1}


def _check_sort_kind(label, args, kwargs, position):
    kind = kwargs.get('kind', args[position] if len(args) > position else None)
    if kind not in (None, 'stable'):
        raise ValueError(f"kind can only be None or 'stable' ({label}: CuPy sorts stably), "
                         f"got {kind!r}")


_VALUE_CHECKS = {'sort': 2, 'argsort': 2, 'ndarray.sort': 1, 'ndarray.argsort': 1}


# ---- the array -------------------------------------------------------------------------------

class SimArray:
    """A device array of the simulated device (see the module docstring)."""
    __slots__ = ('_a', '_dev', '__weakref__')
    __array_priority__ = 100

    def __init__(self, a, device=None):
        self._a = a
        self._dev = _tls.dev if device is None else device

    # ---- refusals and NumPy protocols ------------------------------------------------------
    def __array__(self, dtype=None, copy=None):
        raise SimTypeError('simulated device: implicit conversion to a NumPy array is not '
                           'allowed; use .get() or xp.asnumpy() (CuPy raises here too)')

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        from .simulated import xp      # the namespace is built on top of this module
        sim_ufunc = xp._ufunc(ufunc.__name__)
        if sim_ufunc is None:
            return NotImplemented
        out = kwargs.get('out')
        if isinstance(out, tuple) and len(out) == 1:
            kwargs['out'] = out[0]
        if method == '__call__':
            return sim_ufunc(*inputs, **kwargs)
        return getattr(sim_ufunc, method)(*inputs, **kwargs)

    def __array_function__(self, func, types, args, kwargs):
        from .simulated import MODULES_BY_NUMPY_NAME
        target = MODULES_BY_NUMPY_NAME.get(func.__module__)
        impl = getattr(target, func.__name__, None) if target is not None else None
        if impl is None:
            return NotImplemented
        return impl(*args, **kwargs)

    def __reduce__(self):
        raise SimTypeError('simulated device arrays are not pickled (xpnet files are .npz with '
                           'pickling disabled); copy to host with .get()')

    # ---- transfers and host reads -----------------------------------------------------------
    def _read(self, what):
        _count(_SYNC, 1, what, dev=self._dev)
        _count(_DTOH, 1, what, dev=self._dev)
        return self._a

    def get(self, stream=None, order='C', out=None, blocking=True):
        """Copy to a host ``numpy.ndarray`` (a host synchronisation)."""
        a = self._read('get')
        if out is not None:
            out[...] = a
            return out
        return np.array(a, order=order, copy=True)

    def set(self, arr, stream=None):
        """Copy host data into this array (host to device); as CuPy's, only from a
        ``numpy.ndarray`` of the same dtype and shape."""
        if self._dev != _tls.dev:
            _wrong_device('ndarray.set', self._dev, _tls.dev)
        if not isinstance(arr, np.ndarray):
            raise SimTypeError('Only numpy.ndarray can be set to cupy.ndarray')
        if arr.dtype != self._a.dtype:
            raise SimTypeError(f'{arr.dtype} array cannot be set to {self._a.dtype} array')
        if arr.shape != self._a.shape:
            raise ValueError(f'Shape mismatch. Old shape: {self._a.shape}, new shape: '
                             f'{arr.shape}')
        _count(_HTOD, 1, 'set')
        self._a[...] = arr

    def item(self, *args):
        return self._read('item').item(*args)

    def tolist(self):
        return self._read('tolist').tolist()

    def tobytes(self, order='C'):
        return self._read('tobytes').tobytes(order)

    def __bool__(self):
        return bool(self._read('bool'))

    def __float__(self):
        return float(self._read('float'))

    def __int__(self):
        return int(self._read('int'))

    def __complex__(self):
        return complex(self._read('complex'))

    def __index__(self):
        return operator.index(self._read('index'))

    def __repr__(self):
        text = repr(self._read('repr'))
        return 'array' + text[5:] if text.startswith('array') else text

    def __str__(self):
        return str(self._read('str'))

    def __format__(self, spec):
        return format(self._read('format'), spec)

    # ---- copies ------------------------------------------------------------------------------
    def copy(self, order='C'):
        """A copy on the current device (a peer copy when this array lives elsewhere)."""
        dev = _tls.dev
        if self._dev != dev:
            _count(_PEER, 1, 'copy')
        else:
            _kernels(1, 'copy')
        return _new(self._a.copy(order=order), dev)

    __copy__ = copy

    def __deepcopy__(self, memo):
        return self.copy()

    # ---- attributes --------------------------------------------------------------------------
    shape = property(lambda self: self._a.shape)
    dtype = property(lambda self: self._a.dtype)
    ndim = property(lambda self: self._a.ndim)
    size = property(lambda self: self._a.size)
    nbytes = property(lambda self: self._a.nbytes)
    itemsize = property(lambda self: self._a.itemsize)
    strides = property(lambda self: self._a.strides)
    flags = property(lambda self: self._a.flags)
    T = property(lambda self: _new(self._a.T, self._dev))
    mT = property(lambda self: _new(self._a.mT, self._dev))
    real = property(lambda self: _call('ndarray.real', lambda a: a.real, (self,), None))
    imag = property(lambda self: _call('ndarray.imag', lambda a: a.imag, (self,), None))

    @property
    def base(self):
        b = self._a.base
        if b is None:
            return None
        return _new(b, self._dev) if isinstance(b, np.ndarray) else self

    @property
    def device(self):
        return _dev.Device(self._dev)

    @property
    def data(self):
        return _MemoryPointer(self._a.__array_interface__['data'][0], self._dev)

    def __getattr__(self, name):
        params = _METHOD_PARAMS.get(name, False)
        if params is False:
            if name in _ATTRIBUTES:
                raise NotImplementedError(f'cupy.ndarray.{name} is not simulated')
            raise AttributeError(f"'cupy.ndarray' object has no attribute {name!r} (the "
                                 f'simulated device has CuPy {CUPY_VERSION}\'s methods only)')
        return _bound_method(self, name, params)

    # ---- python protocol ---------------------------------------------------------------------
    def __len__(self):
        if self._a.ndim == 0:
            raise TypeError('len() of unsized object')
        return len(self._a)

    def __iter__(self):
        if self._a.ndim == 0:
            raise TypeError('iteration over a 0-d array')
        return (self[i] for i in range(len(self._a)))

    def __getitem__(self, key):
        return _getitem(self, key)

    def __setitem__(self, key, value):
        _setitem(self, key, value)

    def __matmul__(self, other):
        return _binary_call(self, other, operator.matmul, 'matmul', _matmul_cost)

    def __rmatmul__(self, other):
        return _binary_call(other, self, operator.matmul, 'matmul', _matmul_cost)

    def __imatmul__(self, other):
        return _binary_call(self, other, operator.imatmul, 'matmul', _matmul_cost)


class _MemoryPointer:
    """``ndarray.data`` (CuPy's MemoryPointer): the address and the device."""
    __slots__ = ('ptr', 'device_id')

    def __init__(self, ptr, device_id):
        self.ptr, self.device_id = ptr, device_id


def _operand(other, dev, label):
    """The NumPy value of an operator's other operand, or NotImplemented."""
    t = type(other)
    if t is SimArray:
        if other._dev != dev:
            _wrong_device(label, other._dev, dev)
        return other._a
    if t in (int, float, bool, complex) or isinstance(other, np.generic):
        return other
    if isinstance(other, np.ndarray):
        _refuse(other)
    return NotImplemented


def _binary_call(left, right, op, label, cost=1):
    """``op(left, right)`` where one side is a SimArray of the current device: 1 kernel."""
    dev = _tls.dev
    x = left._a if type(left) is SimArray and left._dev == dev else \
        _operand(left, dev, label)
    if x is NotImplemented:
        return NotImplemented
    y = right._a if type(right) is SimArray and right._dev == dev else \
        _operand(right, dev, label)
    if y is NotImplemented:
        return NotImplemented
    out = op(x, y)
    if getattr(out, 'size', 1):
        _kernels(cost((x, y), {}, out) if callable(cost) else cost, label)
    if type(left) is SimArray and out is x:          # an in-place operator
        return left
    return _wrap_out(out, {}, dev)


def _binary(op, name):
    def forward(self, other):
        return _binary_call(self, other, op, name)

    def reflected(self, other):
        return _binary_call(other, self, op, name)
    return forward, reflected


for _name, _op, _iop in [
        ('add', operator.add, operator.iadd), ('sub', operator.sub, operator.isub),
        ('mul', operator.mul, operator.imul), ('truediv', operator.truediv, operator.itruediv),
        ('floordiv', operator.floordiv, operator.ifloordiv), ('mod', operator.mod, operator.imod),
        ('pow', operator.pow, operator.ipow), ('and', operator.and_, operator.iand),
        ('or', operator.or_, operator.ior), ('xor', operator.xor, operator.ixor),
        ('lshift', operator.lshift, operator.ilshift),
        ('rshift', operator.rshift, operator.irshift)]:
    _f, _r = _binary(_op, _name)
    setattr(SimArray, f'__{_name}__', _f)
    setattr(SimArray, f'__r{_name}__', _r)
    setattr(SimArray, f'__i{_name}__', _binary(_iop, _name)[0])

for _name, _op in [('lt', operator.lt), ('le', operator.le), ('gt', operator.gt),
                   ('ge', operator.ge), ('eq', operator.eq), ('ne', operator.ne)]:
    setattr(SimArray, f'__{_name}__', _binary(_op, _name)[0])
SimArray.__hash__ = None


def _unary(op, name):
    def method(self):
        dev = _tls.dev
        if self._dev != dev:
            _wrong_device(name, self._dev, dev)
        _kernels(1, name)
        return _new(op(self._a), dev)
    return method


for _name, _op in [('neg', operator.neg), ('pos', operator.pos), ('abs', operator.abs),
                   ('invert', operator.invert)]:
    setattr(SimArray, f'__{_name}__', _unary(_op, _name))


_METHOD_SPECS = {}


def _method_spec(name, params):
    """(label, signature, NumPy function, cost, syncs) of an ndarray method (cached)."""
    spec = _METHOD_SPECS.get(name)
    if spec is None:
        label = f'ndarray.{name}'
        func = getattr(np.ndarray, name, None) or _NDARRAY_EXTRAS.get(name) or \
            _not_simulated(label)
        spec = (label, _Signature(f'cupy.{label}', params), func, _COSTS.get(label),
                _SYNCS.get(label, 0))
        _METHOD_SPECS[name] = spec
    return spec


def _bound_method(arr, name, params):
    label, sig, func, cost, syncs = _method_spec(name, params)

    def method(*args, **kwargs):
        sig.check(args, kwargs)
        if label in _VALUE_CHECKS:
            _check_sort_kind(label, args, kwargs, _VALUE_CHECKS[label])
        return _call(label, func, (arr,) + args, kwargs, cost, syncs)
    return method


def _scatter_method(op):
    """``ndarray.scatter_add/max/min`` (and ``cupyx.scatter_*``, which call them): deprecated
    in CuPy 14 in favour of the ufunc's ``at``; they warn here as on a GPU."""
    def method(a, indices, values):
        warnings.warn(f'`ndarray.scatter_{op[:3]}` is deprecated. Please use `cupy.{op}.at` '
                      'instead.', DeprecationWarning, stacklevel=3)
        getattr(np, op).at(a, indices, values)
    return method


_NDARRAY_EXTRAS = {
    'reduced_view': lambda a, dtype=None: a,
    'scatter_add': _scatter_method('add'),
    'scatter_max': _scatter_method('maximum'),
    'scatter_min': _scatter_method('minimum'),
}
_COSTS.update({'ndarray.scatter_add': 1, 'ndarray.scatter_max': 1, 'ndarray.scatter_min': 1})


def _not_simulated(label):
    def missing(*args, **kwargs):
        raise NotImplementedError(f'{label} exists in CuPy {CUPY_VERSION} but is not '
                                  'simulated')
    return missing


# ---- indexing --------------------------------------------------------------------------------

def _index_key(key, devices):
    """The NumPy key, and the number of integer index arrays and of boolean masks in it;
    the devices of the index arrays are appended to ``devices``."""
    parts = key if type(key) is tuple else (key,)
    out, n_int, n_mask = [], 0, 0
    for k in parts:
        t = type(k)
        if t is SimArray:
            devices.append(k._dev)
            k = k._a
        elif t is list:          # CuPy copies a list index up to the device
            _count(_HTOD, 1, 'index list')
            k = np.asarray(k)
            if not k.size:
                k = k.astype(np.int32)
        elif isinstance(k, np.ndarray):
            raise SimTypeError(
                'simulated device: a host numpy.ndarray was used as an index; CuPy would copy '
                'it to the device on every call: make it a device array once (xp.asarray)')
        else:
            out.append(k)
            continue
        if k.dtype.kind == 'b':
            n_mask += 1
        else:
            n_int += 1
        out.append(k)
    return (tuple(out) if type(key) is tuple else out[0]), n_int, n_mask


def _index_cost(n_int, n_mask):
    """(kernels, syncs) of an indexing operation (see the module docstring)."""
    if n_mask:
        return 2 + n_int, 1
    if n_int > 1:
        return n_int + 2, 0
    return n_int, 0


def _account_index(label, devices, dev, kernels, syncs):
    for d in devices:
        if d != dev:
            _wrong_device(label, d, dev)
    if syncs:
        _count(_SYNC, syncs, 'boolean mask')
        _count(_DTOH, syncs, 'boolean mask')
    _kernels(kernels, label)


def _getitem(arr, key):
    devices = [arr._dev]
    nkey, n_int, n_mask = _index_key(key, devices)
    out = arr._a[nkey]
    kernels, syncs = _index_cost(n_int, n_mask)
    if kernels:
        dev = _tls.dev
        _account_index('getitem', devices, dev, kernels, syncs)
        return _new(np.asarray(out), dev)
    if isinstance(out, np.generic):     # CuPy: a 0-d view
        out = np.asarray(out)
    return _new(out, arr._dev)


def _setitem(arr, key, value):
    devices = [arr._dev]
    nkey, n_int, n_mask = _index_key(key, devices)
    kernels, syncs = _index_cost(n_int, n_mask)
    t = type(value)
    if t is SimArray:
        devices.append(value._dev)
        value = value._a
    elif t is list or t is tuple:
        _count(_HTOD, 1, 'setitem list')
        value = _unwrap_in(value, {})
    elif isinstance(value, np.ndarray):
        _refuse(value)
    _account_index('setitem', devices, _tls.dev, max(kernels, 1), syncs)
    arr._a[nkey] = value


# ---- ufuncs -----------------------------------------------------------------------------------

class _SimUfunc:
    """A NumPy ufunc with CuPy's methods, keywords and device rules."""

    def __init__(self, name, func, info):
        self._u = func
        self.__name__ = name
        self.name = f'cupy_{name}'
        self.nin, self.nout = info['nin'], info['nout']
        self.nargs = self.nin + self.nout
        self._info = info

    def __repr__(self):
        return f'<ufunc {self.__name__!r} (simulated)>'

    def __call__(self, *args, **kwargs):
        if kwargs and not _UFUNC_KW.issuperset(kwargs):
            raise TypeError(f'Wrong arguments {kwargs} (cupy.{self.__name__} accepts only '
                            f'{sorted(_UFUNC_KW)})')
        if not self.nin <= len(args) <= self.nargs:
            raise TypeError(f'Wrong number of arguments for {self.name!r}')
        dev = _tls.dev
        label = self.__name__
        ua = _unwrap_on(args, dev, label)
        if kwargs:
            out = self._u(*ua, **{k: _unwrap_on(v, dev, label) for k, v in kwargs.items()})
        else:
            out = self._u(*ua)
        given = kwargs.get('out', args[self.nin] if len(args) > self.nin else None)
        if getattr(out if self.nout == 1 else out[0], 'size', 1):
            _kernels(1, label)
        if self.nout == 1 and type(given) is SimArray:
            return given
        return _wrap_out(out, {}, dev)

    def _method(self, method, supported, cost, args, kwargs, allowed=None):
        if not supported:
            raise NotImplementedError(f'`cupy_{self.__name__}.{method}` is not supported yet '
                                      f'(CuPy {CUPY_VERSION})')
        if allowed is not None and not allowed.issuperset(kwargs):
            raise TypeError(f'cupy.{self.__name__}.{method}() got unexpected keyword arguments '
                            f'{sorted(set(kwargs) - allowed)}')
        return _call(f'{self.__name__}.{method}', getattr(self._u, method), args, kwargs, cost)

    def reduce(self, array, axis=0, dtype=None, out=None, keepdims=False):
        return self._method('reduce', self._info['reduce'], 1, (array,),
                            dict(axis=axis, dtype=dtype, out=out, keepdims=keepdims))

    def accumulate(self, array, axis=0, dtype=None, out=None):
        return self._method('accumulate', self._info['accumulate'], 1, (array,),
                            dict(axis=axis, dtype=dtype, out=out))

    def reduceat(self, array, indices, axis=0, dtype=None, out=None):
        return self._method('reduceat', self._info['reduceat'], 9, (array, indices),
                            dict(axis=axis, dtype=dtype, out=out))

    def outer(self, A, B, **kwargs):
        return self._method('outer', self._info['outer'], 1, (A, B), kwargs, _UFUNC_KW)

    def at(self, a, indices, b=None):
        dtypes = self._info.get('at')
        if dtypes is None:
            raise NotImplementedError(f'`cupy_{self.__name__}.at` is not supported yet '
                                      f'(CuPy {CUPY_VERSION})')
        if type(a) is SimArray and a.dtype.name not in dtypes:
            raise TypeError(f'cupy.{self.__name__}.at only supports {", ".join(dtypes)} as '
                            f'data type, not {a.dtype}')
        if type(a) is not SimArray:
            raise TypeError(f'cupy.{self.__name__}.at: the target must be a device array')
        dev = _tls.dev
        label = f'{self.__name__}.at'
        self._u.at(_unwrap_on(a, dev, label), _unwrap_on(indices, dev, label),
                   _unwrap_on(b, dev, label))
        _kernels(1, label)


_UNARY_UFUNC = {'nin': 1, 'nout': 1, 'reduce': False, 'accumulate': False, 'reduceat': False,
                'outer': False}
