"""A simulated accelerator for tests: NumPy underneath, CuPy's manners on top.

Arrays of this device (:class:`SimArray`) refuse to be mixed with host ``numpy.ndarray``
objects and refuse implicit conversion to them, exactly where CuPy raises ``TypeError``.
Code that passes the test-suite on this device uses the array module of the data's
device throughout, which is what running on CuPy requires.

``xp`` (this module's :data:`xp`) plays the role of ``cupy``: ``xp.zeros(...)``,
``xp.exp(a)``, ``xp.asarray(host)`` (explicit transfer), ``xp.asnumpy(a)``.
"""
import numbers
import operator

import numpy as np

__all__ = ['SimArray', 'xp']


class SimTypeError(TypeError):
    """Raised where CuPy would refuse to mix device and host arrays."""


def _refuse(obj):
    raise SimTypeError(
        f'simulated device: a host numpy.ndarray (shape {obj.shape}, {obj.dtype}) was mixed '
        'with a device array; move it with xp.asarray() first (CuPy raises here too)')


def _unwrap(obj):
    """SimArray -> ndarray; refuse host ndarrays; recurse into lists/tuples/dicts."""
    t = type(obj)
    if t is SimArray:
        return obj._a
    if t is np.ndarray:
        _refuse(obj)
    if t is tuple or t is list:
        return t(_unwrap(o) for o in obj)
    if t is dict:
        return {k: _unwrap(v) for k, v in obj.items()}
    if isinstance(obj, np.ndarray):  # ndarray subclasses (e.g. matrix)
        _refuse(obj)
    return obj


def _wrap(obj):
    t = type(obj)
    if t is np.ndarray:
        return SimArray(obj)
    if isinstance(obj, np.generic):   # CuPy returns 0-d arrays where NumPy returns scalars
        return SimArray(np.asarray(obj))
    if t is tuple or t is list:
        return t(_wrap(o) for o in obj)
    return obj


class SimArray:
    """A device array of the simulated device (see module docstring)."""
    __slots__ = ('_a', '__weakref__')
    __array_priority__ = 1000

    def __init__(self, a):
        self._a = a

    # ---- refusals, as in CuPy -------------------------------------------------
    def __array__(self, dtype=None, copy=None):
        raise SimTypeError('simulated device: implicit conversion to a NumPy array is not '
                           'allowed; use .get() or xp.asnumpy() (CuPy raises here too)')

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        inputs = _unwrap(inputs)
        if 'out' in kwargs:
            kwargs['out'] = _unwrap(kwargs['out'])
        return _wrap(getattr(ufunc, method)(*inputs, **kwargs))

    def __array_function__(self, func, types, args, kwargs):
        return _wrap(func(*_unwrap(args), **_unwrap(kwargs)))

    # ---- explicit transfer ------------------------------------------------------
    def get(self):
        """Copy to a host ``numpy.ndarray`` (CuPy's ``ndarray.get``)."""
        return self._a.copy()

    # ---- attributes -------------------------------------------------------------
    shape = property(lambda self: self._a.shape)
    dtype = property(lambda self: self._a.dtype)
    ndim = property(lambda self: self._a.ndim)
    size = property(lambda self: self._a.size)
    nbytes = property(lambda self: self._a.nbytes)
    itemsize = property(lambda self: self._a.itemsize)
    strides = property(lambda self: self._a.strides)
    flags = property(lambda self: self._a.flags)
    T = property(lambda self: SimArray(self._a.T))

    @property
    def base(self):
        return None if self._a.base is None else self

    @property
    def device(self):
        return _SimDeviceInfo

    def __getattr__(self, name):
        if name.startswith('__'):   # never leak __array_interface__ and friends
            raise AttributeError(name)
        attr = getattr(self._a, name)
        if callable(attr):
            def method(*args, **kwargs):
                return _wrap(attr(*_unwrap(args), **_unwrap(kwargs)))
            method.__name__ = name
            return method
        return _wrap(attr)

    # ---- python protocol ---------------------------------------------------------
    def __len__(self):
        return len(self._a)

    def __iter__(self):
        return (_wrap(v) for v in self._a)

    def __getitem__(self, key):
        return _wrap(self._a[_unwrap(key)])

    def __setitem__(self, key, value):
        self._a[_unwrap(key)] = _unwrap(value)

    def __bool__(self):
        return bool(self._a)

    def __float__(self):
        return float(self._a)

    def __int__(self):
        return int(self._a)

    def __index__(self):
        return operator.index(self._a)

    def __complex__(self):
        return complex(self._a)

    def __repr__(self):
        return 'sim' + repr(self._a)[5:] if repr(self._a).startswith('array') else repr(self._a)

    def __reduce__(self):
        raise SimTypeError('simulated device arrays cannot be pickled; copy to host with .get()')

    def __copy__(self):
        return SimArray(self._a.copy())

    def __deepcopy__(self, memo):
        return SimArray(self._a.copy())


class _SimDeviceInfo:
    id = 0


def _binary(op):
    def forward(self, other):
        return _wrap(op(self._a, _unwrap(other)))

    def reflected(self, other):
        return _wrap(op(_unwrap(other), self._a))
    return forward, reflected


def _inplace(op):
    def method(self, other):
        op(self._a, _unwrap(other))
        return self
    return method


for _name, _op, _iop in [
        ('add', operator.add, operator.iadd), ('sub', operator.sub, operator.isub),
        ('mul', operator.mul, operator.imul), ('truediv', operator.truediv, operator.itruediv),
        ('floordiv', operator.floordiv, operator.ifloordiv), ('mod', operator.mod, operator.imod),
        ('pow', operator.pow, operator.ipow), ('matmul', operator.matmul, operator.imatmul),
        ('and', operator.and_, operator.iand), ('or', operator.or_, operator.ior),
        ('xor', operator.xor, operator.ixor), ('lshift', operator.lshift, operator.ilshift),
        ('rshift', operator.rshift, operator.irshift)]:
    _f, _r = _binary(_op)
    setattr(SimArray, f'__{_name}__', _f)
    setattr(SimArray, f'__r{_name}__', _r)
    setattr(SimArray, f'__i{_name}__', _inplace(_iop))

for _name, _op in [('lt', operator.lt), ('le', operator.le), ('gt', operator.gt),
                   ('ge', operator.ge), ('eq', operator.eq), ('ne', operator.ne)]:
    setattr(SimArray, f'__{_name}__', _binary(_op)[0])
SimArray.__hash__ = None

for _name, _op in [('neg', operator.neg), ('pos', operator.pos), ('abs', operator.abs),
                   ('invert', operator.invert)]:
    setattr(SimArray, f'__{_name}__', (lambda op: lambda self: _wrap(op(self._a)))(_op))


class _SimUfunc:
    """A NumPy ufunc that insists on device arrays, like a CuPy ufunc."""

    def __init__(self, ufunc):
        self._u = ufunc
        self.__name__ = ufunc.__name__

    def __call__(self, *args, **kwargs):
        return _wrap(self._u(*_unwrap(args), **_unwrap(kwargs)))

    def __getattr__(self, name):
        attr = getattr(self._u, name)
        if callable(attr):
            return lambda *a, **k: _wrap(attr(*_unwrap(a), **_unwrap(k)))
        return attr


class _SimModule:
    """A namespace mirroring ``numpy`` (or a submodule) with CuPy's host/device rules."""

    _transfer = frozenset({'asarray', 'array', 'ascontiguousarray'})

    def __init__(self, module, name):
        self._m = module
        self.__name__ = name
        self._cache = {}

    def __repr__(self):
        return f'<simulated array module {self.__name__}>'

    def __getattr__(self, name):
        try:
            return self._cache[name]
        except KeyError:
            pass
        attr = getattr(self._m, name)
        if isinstance(attr, np.ufunc):
            value = _SimUfunc(attr)
        elif isinstance(attr, type) or isinstance(attr, (numbers.Number, np.dtype)) \
                or attr is None:
            value = attr
        elif type(attr).__name__ == 'module':
            value = _SimModule(attr, f'{self.__name__}.{name}')
        elif callable(attr):
            value = self._function(name, attr)
        else:
            value = attr
        self._cache[name] = value
        return value

    def _function(self, name, func):
        if name in self._transfer:
            def transfer(obj, *args, **kwargs):
                if type(obj) is SimArray:
                    obj = obj._a
                elif isinstance(obj, (list, tuple)):
                    obj = _unwrap_allow_host(obj)
                elif isinstance(obj, np.ndarray):
                    obj = obj.copy()   # host -> device never aliases host memory (as CuPy)
                return SimArray(func(obj, *args, **kwargs))
            return transfer

        def wrapped(*args, **kwargs):
            return _wrap(func(*_unwrap(args), **_unwrap(kwargs)))
        wrapped.__name__ = name
        return wrapped

    # CuPy-only helpers
    @staticmethod
    def asnumpy(a):
        return a.get() if type(a) is SimArray else np.asarray(a)

    @staticmethod
    def get_array_module(*args):
        return xp


def _unwrap_allow_host(obj):
    t = type(obj)
    if t is SimArray:
        return obj._a
    if t is tuple or t is list:
        return t(_unwrap_allow_host(o) for o in obj)
    return obj


xp = _SimModule(np, 'simnumpy')
