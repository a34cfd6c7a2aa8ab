"""NDArray: an ``xp`` array (NumPy or CuPy) on a Context, with a place in the autograd graph.

Example::

    x = xpnet.array([[1., 2.], [3., 4.]])        # float32 on cpu(0)
    x.attach_grad()
    with xpnet.autograd.record():
        y = (x * 2).sum()
    y.backward()
    x.grad.asnumpy()                             # [[2, 2], [2, 2]]
"""
import numpy as np

from . import autograd as _ag
from .backend import Context, context_of, current_context, to_device, to_host, is_array
from .backend.checks import read_back

__all__ = ['NDArray', 'array', 'RowSparseGrad', 'write_out', 'slice_key']

_new = object.__new__
_generic = np.generic


def _wrap(data, ctx):
    """Wrap an xp array already on ``ctx`` (no copy). Internal fast path; on the simulated
    device it checks that the data really lives on ``ctx`` (CuPy would not notice)."""
    if isinstance(data, _generic):   # NumPy gives scalars for 0-d results; keep arrays
        data = np.asarray(data)
    elif ctx.device_type == 'sim' and getattr(data, '_dev', ctx.device_id) != ctx.device_id:
        _misplaced(data, ctx)
    a = _new(NDArray)
    a._data = data
    a._ctx = ctx
    a._node = None
    a._oidx = 0
    a._grad = None
    a._grad_req = 'null'
    a._fresh_grad = False
    return a


_ag._wrap = _wrap


def _misplaced(data, ctx):
    from .backend.simulated import SimDeviceError
    raise SimDeviceError(f'simulated device: an array allocated on sim({data._dev}) was '
                         f'labelled as living on {ctx}: it was created while another device '
                         f'was current (run the allocation under {ctx}.use())')


def _default_dtype(obj, dtype):
    if dtype is not None:
        return np.dtype(dtype)
    kind = getattr(getattr(obj, 'dtype', None), 'kind', None)
    if kind is None:   # lists, scalars
        kind = np.asarray(obj).dtype.kind
    return np.dtype(np.float32) if kind in 'fc' else None


def array(obj, ctx=None, dtype=None):
    """Create an NDArray from a nested list, a number, a host or device array, or an NDArray.

    Float input becomes float32 unless ``dtype`` says otherwise; integer and boolean input
    keeps its dtype. The data is always copied.
    """
    ctx = Context(ctx) if ctx is not None else (
        obj._ctx if isinstance(obj, NDArray) else current_context())
    if isinstance(obj, NDArray):
        obj = obj._data
    dt = _default_dtype(obj, dtype)
    return _wrap(to_device(obj, ctx, dtype=dt, copy=True), ctx)


class RowSparseGrad:
    """A row-sparse gradient: ``values[i]`` is the gradient of row ``indices[i]``.

    Produced by ``Embedding(sparse_grad=True)`` / ``SparseEmbedding``; rows may repeat
    until :meth:`coalesce` sums them.
    """
    is_row_sparse = True
    __slots__ = ('indices', 'values', 'shape')

    def __init__(self, indices, values, shape):
        self.indices, self.values, self.shape = indices, values, tuple(shape)

    @property
    def dtype(self):
        return self.values.dtype

    def astype(self, dtype):
        return RowSparseGrad(self.indices, self.values.astype(dtype), self.shape)

    def __add__(self, other):
        if getattr(other, 'is_row_sparse', False):
            xp = _xp_of(self.values)
            with context_of(self.values).use():
                return RowSparseGrad(xp.concatenate([self.indices, other.indices]),
                                     xp.concatenate([self.values, other.values]), self.shape)
        with context_of(self.values).use():
            return self.todense() + other

    __radd__ = __add__

    def __iadd__(self, other):
        return self.__add__(other)

    def coalesce(self):
        """Sum repeated rows; indices become unique and sorted."""
        xp = _xp_of(self.values)
        with context_of(self.values).use():
            uniq, inverse = xp.unique(self.indices, return_inverse=True)
            vals = xp.zeros((uniq.shape[0],) + self.values.shape[1:], dtype=self.values.dtype)
            from .backend import scatter_add
            scatter_add(xp, vals, inverse.reshape(-1), self.values)
        return RowSparseGrad(uniq, vals, self.shape)

    def todense(self):
        xp = _xp_of(self.values)
        with context_of(self.values).use():
            out = xp.zeros(self.shape, dtype=self.values.dtype)
            from .backend import scatter_add
            scatter_add(xp, out, self.indices, self.values)
        return out


def _xp_of(arr):
    from .backend import get_array_module
    return get_array_module(arr)


class NDArray:
    """An n-dimensional array on a device. See the module docstring."""
    __slots__ = ('_data', '_ctx', '_node', '_oidx', '_grad', '_grad_req', '_fresh_grad',
                 '_sparse', '__weakref__')
    __array_priority__ = 1000
    __array_ufunc__ = None        # numpy defers to our reflected operators

    def __init__(self, data, ctx=None, dtype=None):
        other = array(data, ctx=ctx, dtype=dtype)
        for name in ('_data', '_ctx', '_node', '_oidx', '_grad', '_grad_req', '_fresh_grad'):
            setattr(self, name, getattr(other, name))

    # ---- basic properties ----------------------------------------------------------
    @property
    def shape(self):
        return self._data.shape

    @property
    def ndim(self):
        return self._data.ndim

    @property
    def size(self):
        return self._data.size

    @property
    def dtype(self):
        return self._data.dtype

    @property
    def context(self):
        return self._ctx

    ctx = context

    @property
    def device(self):
        return self._ctx

    @property
    def xp(self):
        """The array module (numpy, cupy, simulated) of this array's device."""
        return self._ctx.xp

    @property
    def data(self):
        """The underlying xp array (no copy)."""
        return self._data

    @property
    def stype(self):
        return 'default'

    @property
    def grad(self):
        """The gradient buffer attached by :meth:`attach_grad`, or None."""
        return self._grad

    @property
    def grad_req(self):
        return self._grad_req

    def _new(self, data):
        return _wrap(data, self._ctx)

    # ---- host / device transfer -------------------------------------------------------
    def asnumpy(self):
        """A host ``numpy.ndarray`` copy of the data.

        Raises the first failed pending device check (see :mod:`xpnet.backend.checks`):
        a read-back is where device-side input checks surface.
        """
        return read_back(self._data)

    def asscalar(self):
        """The value of a size-1 array as a Python scalar."""
        if self.size != 1:
            raise ValueError(f'asscalar: the array has {self.size} elements, expected 1')
        return self.asnumpy().reshape(()).item()

    item = asscalar

    def tolist(self):
        return self.asnumpy().tolist()

    def as_in_context(self, ctx):
        """This array on ``ctx`` (itself when already there; differentiable)."""
        ctx = Context(ctx)
        if ctx == self._ctx:
            return self
        return _O.copy_to_context(self, ctx)

    as_in_ctx = as_in_context

    def copyto(self, other):
        """Copy into a Context (new array) or into another NDArray (in place)."""
        if isinstance(other, NDArray):
            if other.shape != self.shape:
                raise ValueError(f'copyto: shape {self.shape} into {other.shape}')
            with other._ctx.use():
                other._data[...] = to_device(self._data, other._ctx, dtype=other.dtype)
            return other
        ctx = Context(other)
        return _wrap(to_device(self._data, ctx, copy=True), ctx)

    def copy(self):
        with self._ctx.use():
            return _wrap(self._data.copy(), self._ctx)

    def wait_to_read(self):
        """Block until the data is computed (synchronizes the device on GPU)."""
        if self._ctx.device_type != 'cpu':
            self.xp.cuda.Device(self._ctx.device_id).synchronize()

    # ---- autograd -----------------------------------------------------------------------
    def attach_grad(self, grad_req='write', stype=None):
        """Make this array a leaf whose gradient ``backward()`` writes into ``.grad``."""
        if grad_req not in ('write', 'add', 'null'):
            raise ValueError(f"grad_req must be 'write', 'add' or 'null', got {grad_req!r}")
        self._node = None
        self._grad_req = grad_req
        if grad_req == 'null':
            self._grad = None
        else:
            with self._ctx.use():      # the buffer lives (and is zeroed) on this device
                self._grad = _wrap(self.xp.zeros_like(self._data), self._ctx)
        self._fresh_grad = False

    def backward(self, out_grad=None, retain_graph=False, train_mode=True):
        """Backpropagate from this array; ``out_grad`` defaults to ones."""
        _ag.backward([self], None if out_grad is None else [out_grad],
                     retain_graph=retain_graph, train_mode=train_mode)

    def detach(self):
        """The same data, cut from the graph."""
        return _wrap(self._data, self._ctx)

    def _accumulate_sparse(self, g, req):
        """Store a row-sparse gradient in this gradient buffer (see Parameter)."""
        if req == 'add' and getattr(self, '_sparse', None) is not None:
            self._sparse = self._sparse + g
        elif req == 'add':
            with self._ctx.use():
                self._data += g.todense()
        else:
            self._sparse = g

    # ---- conversions ---------------------------------------------------------------------
    def astype(self, dtype, copy=True):
        dtype = np.dtype(dtype)
        if not copy and dtype == self.dtype:
            return self
        return _O.astype(self, dtype)

    def reshape(self, *shape, **kwargs):
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        if 'shape' in kwargs:
            shape = tuple(kwargs.pop('shape'))
        return _O.reshape(self, shape, reverse=kwargs.pop('reverse', False))

    def reshape_like(self, other):
        return _O.reshape(self, other.shape)

    def transpose(self, *axes):
        if len(axes) == 1 and isinstance(axes[0], (tuple, list)):
            axes = tuple(axes[0])
        return _O.transpose(self, axes or None)

    @property
    def T(self):
        return _O.transpose(self, None)

    def flatten(self):
        return _O.flatten(self)

    def expand_dims(self, axis):
        return _O.expand_dims(self, axis)

    def squeeze(self, axis=None, inplace=False):
        """Remove size-1 axes; ``inplace=True`` reshapes this array itself and returns it
        (MXNet's in-place squeeze; not for arrays in a recorded graph)."""
        out = _O.squeeze(self, axis)
        if not inplace:
            return out
        if _ag._state.recording and (self._node is not None or self._grad is not None):
            raise RuntimeError('squeeze(inplace=True) on an array that is part of a recorded '
                               'graph is not supported inside autograd.record()')
        self._data = out._data
        return self

    def swapaxes(self, dim1, dim2):
        return _O.swapaxes(self, dim1, dim2)

    def broadcast_to(self, shape):
        return _O.broadcast_to(self, shape)

    def broadcast_like(self, other):
        return _O.broadcast_to(self, other.shape)

    def flip(self, axis):
        return _O.flip(self, axis)

    def split(self, num_outputs, axis=1, squeeze_axis=False):
        return _O.split(self, num_outputs, axis, squeeze_axis)

    def tile(self, reps):
        return _O.tile(self, reps)

    def slice(self, begin, end, step=None):
        """MXNet's ``slice``: ``begin``/``end``/``step`` tuples (None entries mean the whole
        axis; axes beyond them are kept whole). Differentiable."""
        return _O.getitem(self, slice_key(self.ndim, begin, end, step))

    def slice_axis(self, axis, begin, end):
        """This array restricted to ``[begin, end)`` along ``axis`` (``end=None``: to the
        end)."""
        key = [slice(None)] * self.ndim
        key[axis] = slice(begin, end)
        return _O.getitem(self, tuple(key))

    def tostype(self, stype):
        """A copy in storage type ``stype``; only ``'default'`` (dense) exists in xpnet."""
        if stype != 'default':
            raise NotImplementedError(f'tostype({stype!r}): xpnet arrays are dense; only '
                                      "'default' is supported")
        return self.copy()

    def repeat(self, repeats, axis=None):
        return _O.repeat(self, repeats, axis)

    # ---- reductions ------------------------------------------------------------------------
    def sum(self, axis=None, keepdims=False, exclude=False):
        return _O.sum(self, axis, keepdims, exclude)

    def mean(self, axis=None, keepdims=False, exclude=False):
        return _O.mean(self, axis, keepdims, exclude)

    def max(self, axis=None, keepdims=False, exclude=False):
        return _O.max(self, axis, keepdims, exclude)

    def min(self, axis=None, keepdims=False, exclude=False):
        return _O.min(self, axis, keepdims, exclude)

    def prod(self, axis=None, keepdims=False, exclude=False):
        return _O.prod(self, axis, keepdims, exclude)

    def norm(self, ord=2, axis=None, keepdims=False):
        return _O.norm(self, ord, axis, keepdims)

    def argmax(self, axis=None, keepdims=False):
        return _O.argmax(self, axis, keepdims)

    def argmin(self, axis=None, keepdims=False):
        return _O.argmin(self, axis, keepdims)

    def argsort(self, axis=-1, is_ascend=True):
        return _O.argsort(self, axis, is_ascend)

    def topk(self, axis=-1, k=1, ret_typ='indices', is_ascend=False):
        return _O.topk(self, axis, k, ret_typ, is_ascend)

    # ---- elementwise ----------------------------------------------------------------------
    def exp(self):
        return _O.exp(self)

    def log(self):
        return _O.log(self)

    def sqrt(self):
        return _O.sqrt(self)

    def square(self):
        return _O.square(self)

    def abs(self):
        return _O.abs(self)

    def sign(self):
        return _O.sign(self)

    def relu(self):
        return _O.relu(self)

    def sigmoid(self):
        return _O.sigmoid(self)

    def tanh(self):
        return _O.tanh(self)

    def softmax(self, axis=-1):
        return _O.softmax(self, axis)

    def log_softmax(self, axis=-1):
        return _O.log_softmax(self, axis)

    def clip(self, a_min, a_max):
        return _O.clip(self, a_min, a_max)

    def one_hot(self, depth, on_value=1.0, off_value=0.0, dtype='float32'):
        return _O.one_hot(self, depth, on_value, off_value, dtype)

    def pick(self, index, axis=-1, keepdims=False):
        return _O.pick(self, index, axis, keepdims)

    def take(self, indices, axis=0, mode='clip'):
        return _O.take(self, indices, axis, mode)

    def zeros_like(self):
        return _O.zeros_like(self)

    def ones_like(self):
        return _O.ones_like(self)

    # ---- python protocol -------------------------------------------------------------------
    def __len__(self):
        if self._data.ndim == 0:
            raise TypeError('len() of a 0-d NDArray')
        return self._data.shape[0]

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    def __getitem__(self, key):
        return _O.getitem(self, key)

    def __setitem__(self, key, value):
        if _ag._state.recording and (self._node is not None or self._grad is not None):
            raise RuntimeError('in-place assignment to an array that is part of a recorded '
                               'graph is not supported inside autograd.record()')
        if isinstance(value, NDArray):
            value = value._data if value._ctx == self._ctx else \
                to_device(value._data, self._ctx, dtype=self.dtype)
        elif is_array(value) or isinstance(value, (list, tuple)):
            value = to_device(value, self._ctx, dtype=self.dtype)
        with self._ctx.use():
            self._data[_O.device_index(self, key)] = value

    def __bool__(self):
        if self.size != 1:
            raise ValueError('the truth value of an NDArray with more than one element is '
                             'ambiguous')
        return bool(self.asscalar())

    def __float__(self):
        return float(self.asscalar())

    def __int__(self):
        return int(self.asscalar())

    def __index__(self):
        if self.dtype.kind not in 'iub':
            raise TypeError('only integer arrays can be used as an index')
        return int(self.asscalar())

    def __array__(self, dtype=None, copy=None):
        # NumPy interop (np.asarray, np.argmax...) for host arrays only: a device array must
        # be copied explicitly, as CuPy requires.
        if self._ctx.device_type != 'cpu':
            raise TypeError(f'cannot convert an NDArray on {self._ctx} to a NumPy array '
                            'implicitly; use .asnumpy()')
        if copy:
            return np.array(self._data, dtype=dtype, copy=True)
        return np.asarray(self._data, dtype=dtype)

    def __hash__(self):
        return id(self)

    def __repr__(self):
        shape = 'x'.join(str(s) for s in self.shape) or '1'
        body = np.array2string(to_host(self._data), precision=8, separator=' ')
        return f'\n{body}\n<NDArray {shape} @{self._ctx}>'

    def __str__(self):
        return repr(self)

    def __reduce__(self):
        return (_from_host, (self.asnumpy(), self._ctx.device_type, self._ctx.device_id))

    def __deepcopy__(self, memo):
        # Keeps the device and the gradient attachment (so a deep-copied net can train).
        out = self.copy()
        if self._grad is not None:
            out.attach_grad(self._grad_req)
        return out

    # ---- operators -------------------------------------------------------------------------
    def __add__(self, other):
        return _O.add(self, other)

    def __radd__(self, other):
        return _O.add(self, other)

    def __sub__(self, other):
        return _O.subtract(self, other)

    def __rsub__(self, other):
        return _O.rsubtract(self, other)

    def __mul__(self, other):
        return _O.multiply(self, other)

    def __rmul__(self, other):
        return _O.multiply(self, other)

    def __truediv__(self, other):
        return _O.divide(self, other)

    def __rtruediv__(self, other):
        return _O.rdivide(self, other)

    def __floordiv__(self, other):
        return _O.floor_divide(self, other)

    def __mod__(self, other):
        return _O.mod(self, other)

    def __pow__(self, other):
        return _O.power(self, other)

    def __rpow__(self, other):
        return _O.rpower(self, other)

    def __matmul__(self, other):
        return _O.matmul(self, other)

    def __rmatmul__(self, other):
        return _O.matmul(_as_nd(other, self), self)

    def __neg__(self):
        return _O.negative(self)

    def __pos__(self):
        return self

    def __abs__(self):
        return _O.abs(self)

    def __eq__(self, other):
        return _O.compare(self, other, 'equal')

    def __ne__(self, other):
        return _O.compare(self, other, 'not_equal')

    def __lt__(self, other):
        return _O.compare(self, other, 'less')

    def __le__(self, other):
        return _O.compare(self, other, 'less_equal')

    def __gt__(self, other):
        return _O.compare(self, other, 'greater')

    def __ge__(self, other):
        return _O.compare(self, other, 'greater_equal')

    def _inplace(self, other, op, name):
        if _ag._state.recording and (self._node is not None or self._grad is not None):
            # Out of place inside record(): Python rebinds the name to the result.
            return op(self, other)
        other_data = other._data if isinstance(other, NDArray) else \
            (to_device(other, self._ctx) if is_array(other) else other)
        with self._ctx.use():
            getattr(self.xp, name)(self._data, other_data, out=self._data, casting='unsafe')
        return self

    def __iadd__(self, other):
        return self._inplace(other, NDArray.__add__, 'add')

    def __isub__(self, other):
        return self._inplace(other, NDArray.__sub__, 'subtract')

    def __imul__(self, other):
        return self._inplace(other, NDArray.__mul__, 'multiply')

    def __itruediv__(self, other):
        return self._inplace(other, NDArray.__truediv__, 'divide')


def _from_host(host, device_type, device_id):
    return array(host, ctx=Context(device_type, device_id), dtype=host.dtype)


def _as_nd(value, like):
    """``value`` (NDArray, host or device array, list, scalar) as an NDArray on ``like``'s
    device; floats take ``like``'s dtype. Device arrays are never read through the host."""
    if isinstance(value, NDArray):
        return value
    kind = value.dtype.kind if is_array(value) else np.asarray(value).dtype.kind
    return array(value, ctx=like._ctx, dtype=like.dtype if kind in 'fc' else None)


_O = None   # the xpnet.ops module; set by xpnet.ops when it is imported (avoids an import cycle)


def slice_key(ndim, begin, end, step=None):
    """The indexing key of MXNet's ``slice(data, begin, end, step)`` for ``ndim`` axes."""
    begin, end = tuple(begin), tuple(end)
    step = tuple(step) if step else (None,) * len(begin)
    if not len(begin) == len(end) == len(step) or len(begin) > ndim:
        raise ValueError(f'slice: begin {begin}, end {end} and step {step} must have the same '
                         f'length, at most the number of axes ({ndim})')
    return tuple(slice(b, e, s) for b, e, s in zip(begin, end, step))


def write_out(result, out):
    """``result`` written into ``out`` (MXNet's ``out=`` argument); returns ``out``.

    Outside ``autograd.record()`` the values are copied into ``out``'s buffer (cast to its
    dtype). Inside it, ``out`` takes the result's place in the graph instead, so a backward
    pass that reads saved buffers still sees the values it saved; an ``out`` that is itself
    part of the graph (or has a gradient) cannot be overwritten there.
    """
    if out is None or out is result:
        return result
    if not isinstance(out, NDArray):
        raise TypeError(f'out must be an NDArray, got {type(out).__name__}')
    if out.shape != result.shape:
        raise ValueError(f'out has shape {out.shape} but the result has shape {result.shape}')
    if _ag._state.recording and (result._node is not None or out._node is not None
                                 or out._grad is not None):
        if out._node is not None or out._grad is not None:
            raise RuntimeError('out= cannot overwrite an array that is part of a recorded '
                               'graph inside autograd.record()')
        out._data, out._ctx = result._data, result._ctx
        out._node, out._oidx = result._node, result._oidx
        return out
    value = to_device(result._data, out._ctx, dtype=out.dtype)
    with out._ctx.use():
        out._data[...] = value
    return out


def _accepts_out(method):
    """Give an NDArray method MXNet's ``out=`` argument (see :func:`write_out`)."""
    def call(self, *args, out=None, **kwargs):
        return write_out(method(self, *args, **kwargs), out)
    call.__name__, call.__qualname__ = method.__name__, method.__qualname__
    call.__doc__ = method.__doc__
    return call


# The methods that take ``out=`` in MXNet (NumPy's np.sum(x) etc. pass ``out=None`` too).
for _name in ('sum', 'mean', 'max', 'min', 'prod', 'norm', 'argmax', 'argmin', 'argsort',
              'topk', 'exp', 'log', 'sqrt', 'square', 'abs', 'sign', 'relu', 'sigmoid', 'tanh',
              'softmax', 'log_softmax', 'clip', 'one_hot', 'pick', 'take', 'transpose',
              'flatten', 'expand_dims', 'swapaxes', 'broadcast_to', 'broadcast_like', 'flip',
              'tile', 'repeat', 'slice', 'slice_axis', 'reshape_like', 'zeros_like',
              'ones_like'):
    setattr(NDArray, _name, _accepts_out(getattr(NDArray, _name)))
del _name
