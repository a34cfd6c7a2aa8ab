"""Parameter: a named weight with one replica (and gradient buffer) per device.

Shapes may hold 0 for a dimension not known yet (``in_units=0``): initialization is then
deferred until the owning layer sees its first input and fills the shape in.

Example::

    w = Parameter('weight', shape=(10, 0), allow_deferred_init=True)
    w.initialize(init='xavier', ctx=[xpnet.cpu(0), xpnet.cpu(1)])
    w.shape = (10, 784)          # the layer does this at its first forward
    w._finish_deferred_init()
    w.data(xpnet.cpu(1))         # the replica on cpu(1)
"""
import os
import warnings
from collections import OrderedDict

import numpy as np

from .. import initializer as _init
from ..backend import Context, current_context, is_array, to_device, to_host
from ..ndarray import NDArray, _wrap
from ..serialization import save_npz
from .param_file import read_parameter_file

__all__ = ['Parameter', 'Constant', 'ParameterDict', 'DeferredInitializationError']


class DeferredInitializationError(RuntimeError):
    """The parameter's shape is not known yet, so it has no data."""


def _ctx_list(ctx):
    if ctx is None:
        return [current_context()]
    if isinstance(ctx, (list, tuple)):
        if not ctx:
            raise ValueError('ctx must not be an empty list')
        return [Context(c) for c in ctx]
    return [Context(ctx)]


def _shape_known(shape):
    return shape is not None and all(s is not None and s > 0 for s in shape)


class Parameter:
    """A model weight. See the module docstring.

    Args:
        name: the parameter's name (``'weight'``, ``'bias'``...).
        grad_req: 'write' (backward overwrites the gradient), 'add' (accumulates), 'null'.
        shape: int or tuple; 0 marks a dimension inferred at the first forward.
        dtype: data type (float32 by default).
        lr_mult, wd_mult: per-parameter multipliers of the learning rate and weight decay.
        init: initializer (object or name) used instead of the one given to ``initialize``.
        allow_deferred_init: allow ``initialize`` before the shape is fully known.
        differentiable: False makes the parameter a constant with no gradient.
        grad_stype: 'default' or 'row_sparse' (only the looked-up rows get a gradient).
    """

    def __init__(self, name='weight', grad_req='write', shape=None, dtype=np.float32,
                 lr_mult=1.0, wd_mult=1.0, init=None, allow_deferred_init=False,
                 differentiable=True, stype='default', grad_stype='default'):
        self.name = name
        self._shape = None if shape is None else (
            (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape))
        self.dtype = np.dtype(dtype)
        self.lr_mult = lr_mult
        self.wd_mult = wd_mult
        self.init = init
        self.allow_deferred_init = allow_deferred_init
        self._differentiable = differentiable
        if grad_stype not in ('default', 'row_sparse'):
            raise ValueError(f"grad_stype must be 'default' or 'row_sparse', got {grad_stype!r}")
        self._stype = stype
        self._grad_stype = grad_stype
        self._grad_req = grad_req if differentiable else 'null'
        if self._grad_req not in ('write', 'add', 'null'):
            raise ValueError(f"grad_req must be 'write', 'add' or 'null', got {grad_req!r}")
        self._data = None          # list of NDArray, one per context
        self._ctx_list = None
        self._deferred = None      # (init, ctx_list, default_init) while the shape is unknown
        self._structure_name = None

    def __repr__(self):
        return f'Parameter {self.name} (shape={self._shape}, dtype={self.dtype})'

    # ---- shape ------------------------------------------------------------------------------
    @property
    def shape(self):
        return self._shape

    @shape.setter
    def shape(self, new_shape):
        new_shape = tuple(new_shape)
        if self._shape is None:
            self._shape = new_shape
            return
        if len(new_shape) != len(self._shape) or any(
                old not in (0, None) and old != new for old, new in zip(self._shape, new_shape)):
            raise ValueError(f'Parameter {self.name!r}: cannot change shape from {self._shape} '
                             f'to {new_shape}')
        self._shape = new_shape

    # ---- gradient requirement ----------------------------------------------------------------
    @property
    def grad_req(self):
        return self._grad_req

    @grad_req.setter
    def grad_req(self, req):
        if req not in ('write', 'add', 'null'):
            raise ValueError(f"grad_req must be 'write', 'add' or 'null', got {req!r}")
        if not self._differentiable:
            req = 'null'
        if req == self._grad_req:
            return
        self._grad_req = req
        if self._data is not None:
            for d in self._data:
                d.attach_grad(req)

    @property
    def grad_stype(self):
        return self._grad_stype

    @property
    def stype(self):
        return self._stype

    # ---- initialization ----------------------------------------------------------------------
    def initialize(self, init=None, ctx=None, default_init=None, force_reinit=False):
        """Create the data on each context of ``ctx`` (a Context or a list of them).

        The parameter's own ``init`` wins over ``init``, which wins over ``default_init``
        (Gluon's precedence); the default is ``Uniform(0.07)``.
        """
        if self._data is not None and not force_reinit:
            warnings.warn(f'Parameter {self.name!r} is already initialized, ignoring. Set '
                          'force_reinit=True to re-initialize.', stacklevel=2)
            return
        ctx_list = _ctx_list(ctx)
        if default_init is None:
            default_init = _init.Uniform()
        chosen = self.init if self.init is not None else init
        if not _shape_known(self._shape):
            if not self.allow_deferred_init:
                raise ValueError(f'Parameter {self.name!r} has unknown shape {self._shape}; '
                                 'give the layer its input size (e.g. in_units) or allow '
                                 'deferred initialization')
            self._data = None
            self._deferred = (chosen, ctx_list, default_init)
            return
        self._init_impl(chosen, ctx_list, default_init)

    def _init_impl(self, init, ctx_list, default_init):
        explicit = init is not None
        initializer = _init.create(init) if explicit else _init.create(default_init)
        host = initializer.init_array(self.name, self._shape, self.dtype, explicit=explicit) \
            if isinstance(initializer, _init.Initializer) else self._call_init(initializer)
        self._set_replicas(host, ctx_list)

    def _set_replicas(self, host, ctx_list):
        """Make the data: a copy of the host array ``host`` on each context."""
        replicas = [_wrap(to_device(host, c, dtype=self.dtype, copy=True), c)
                    for c in ctx_list]
        for d in replicas:
            d.attach_grad(self._grad_req)
        self._deferred = None
        self._ctx_list = list(ctx_list)
        self._data = replicas      # last: another thread seeing data sees it complete

    def _call_init(self, fn):
        arr = np.zeros(self._shape, dtype=self.dtype)
        fn(_init.InitDesc(self.name), arr)
        return arr

    def _finish_deferred_init(self):
        """Initialize now that the shape is known (called by the layer at its first forward)."""
        if self._deferred is None:
            return
        if not _shape_known(self._shape):
            raise ValueError(f'Parameter {self.name!r}: shape {self._shape} is still unknown')
        init, ctx_list, default_init = self._deferred
        self._init_impl(init, ctx_list, default_init)

    @property
    def is_initialized(self):
        return self._data is not None

    def _check(self):
        if self._data is None:
            if self._deferred is not None:
                raise DeferredInitializationError(
                    f'Parameter {self.name!r} has not been initialized yet because its shape '
                    f'{self._shape} is not known; run a forward pass first')
            raise RuntimeError(f'Parameter {self.name!r} has not been initialized; call '
                               '.initialize() on the block or parameter first')

    def _index(self, ctx):
        if ctx is None:
            if len(self._data) == 1:
                return 0
            ctx = current_context()
        for i, c in enumerate(self._ctx_list):
            if c is ctx:
                return i
        ctx = Context(ctx)
        for i, c in enumerate(self._ctx_list):
            if c == ctx:
                return i
        raise RuntimeError(f'Parameter {self.name!r} was not initialized on {ctx}; it lives on '
                           f'{self._ctx_list}')

    # ---- data access -------------------------------------------------------------------------
    def data(self, ctx=None):
        """The replica on ``ctx`` (the only one, or the current context's)."""
        self._check()
        return self._data[self._index(ctx)]

    def list_data(self):
        self._check()
        return list(self._data)

    def grad(self, ctx=None):
        """The gradient buffer of the replica on ``ctx``."""
        self._check()
        if self._grad_req == 'null':
            raise RuntimeError(f"Parameter {self.name!r} has grad_req='null': no gradient")
        d = self._data[self._index(ctx)]
        _materialize_sparse(d)
        return d._grad

    def list_grad(self):
        self._check()
        if self._grad_req == 'null':
            raise RuntimeError(f"Parameter {self.name!r} has grad_req='null': no gradient")
        for d in self._data:
            _materialize_sparse(d)
        return [d._grad for d in self._data]

    def list_ctx(self):
        if self._data is None and self._deferred is not None:
            return list(self._deferred[1])
        self._check()
        return list(self._ctx_list)

    def set_data(self, data):
        """Set every replica to ``data`` (an NDArray or array; copied)."""
        if isinstance(data, NDArray):
            data = data.data
        shape = tuple(data.shape)
        if self._shape is not None:
            self.shape = shape
        else:
            self._shape = shape
        if self._data is None:
            if self._deferred is None:
                raise RuntimeError(f'Parameter {self.name!r} has not been initialized')
            self._finish_deferred_init()
        host = to_host(data) if not isinstance(data, np.ndarray) else data
        for d in self._data:
            if d.shape != shape:
                raise ValueError(f'Parameter {self.name!r}: cannot set data of shape {shape} '
                                 f'into shape {d.shape}')
            with d.context.use():       # each replica is written on its own device
                d._data[...] = to_device(host, d.context, dtype=self.dtype)

    def zero_grad(self):
        """Set the gradient buffers to zero."""
        if self._data is None:
            return
        for d in self._data:
            if d._grad is not None:
                with d.context.use():
                    d._grad._data[...] = 0
                d._grad._sparse = None

    def reset_ctx(self, ctx):
        """Move the parameter to the given context(s), keeping its values."""
        ctx_list = _ctx_list(ctx)
        if self._data is None:
            if self._deferred is not None:
                init, _, default = self._deferred
                self._deferred = (init, ctx_list, default)
                return
            raise RuntimeError(f'Parameter {self.name!r} has not been initialized')
        host = self._data[0].asnumpy()
        self._ctx_list = ctx_list
        self._data = [_wrap(to_device(host, c, copy=True), c) for c in ctx_list]
        for d in self._data:
            d.attach_grad(self._grad_req)

    def cast(self, dtype):
        """Change the data type of the data and gradients."""
        self.dtype = np.dtype(dtype)
        if self._data is None:
            return
        for d in self._data:
            with d.context.use():
                d._data = d._data.astype(self.dtype)
            d.attach_grad(self._grad_req)

    def var(self):
        raise NotImplementedError('xpnet has no symbolic graphs')

    def _load_init(self, value, ctx=None, cast_dtype=False, dtype_source='current',
                   source='the file'):
        """Set the data from a loaded host array, initializing the Parameter (on ``ctx``,
        or where it lives) if needed. The shape must match where it is known."""
        shape = self._shape
        if shape is not None and (len(shape) != value.ndim or any(
                s not in (0, None) and s != v for s, v in zip(shape, value.shape))):
            raise ValueError(f'Parameter {self.name!r} has shape {shape} but {source} holds '
                             f'shape {value.shape}')
        if cast_dtype and dtype_source == 'saved':
            self.dtype = value.dtype
        if not self.is_initialized:      # no initializer run: the file gives the values
            self.shape = value.shape
            if ctx is None and self._deferred is not None:
                ctx = self._deferred[1]
            self._set_replicas(value, _ctx_list(ctx))
            return
        if ctx is not None and _ctx_list(ctx) != self.list_ctx():
            self.reset_ctx(ctx)
        self.set_data(value.astype(self.dtype, copy=False))


def _materialize_sparse(d):
    """Turn a pending row-sparse gradient into the dense buffer (for users reading grad())."""
    g = d._grad
    if g is not None and getattr(g, '_sparse', None) is not None:
        sp = g._sparse
        g._sparse = None
        with g.context.use():
            g._data[...] = 0
            g._data[...] = sp.todense()


class Constant(Parameter):
    """A parameter that holds a fixed value and never receives a gradient."""

    def __init__(self, value, name='const'):
        if isinstance(value, NDArray):
            value = value.asnumpy()
        value = to_host(value) if is_array(value) else np.asarray(value)   # CuPy's too
        dtype = value.dtype if value.dtype.kind != 'f' else np.float32
        super().__init__(name=name, grad_req='null', shape=value.shape, dtype=dtype,
                         init=_init.Constant(value), differentiable=False)
        self.value = value

    def __repr__(self):
        return f'Constant {self.name} (shape={self._shape}, dtype={self.dtype})'


class ParameterDict(OrderedDict):
    """An ordered mapping of names to Parameters, with bulk operations (Gluon's ParameterDict).

    Three uses:

    - Standalone, as in Gluon 1.x: ``ParameterDict('net_')``; ``get('weight', shape=...)``
      creates (or returns) the Parameter named ``'net_weight'``, stored under that name,
      first looking it up in ``shared`` (another ParameterDict) so two dicts can hold the
      same Parameter objects.
    - ``block.collect_params()``: keys are *structural* names (``features.3.weight``, see
      :mod:`xpnet.layers.block`); ``prefix`` is the block's prefix. Gluon 1.x keys were
      prefixed names (``resnetv10_conv0_weight``); xpnet keeps the structural ones, which
      are also the names Gluon's ``save_parameters`` writes.
    - ``block.params`` (Gluon 1.x ``self.params.get('w', shape=(3,))`` inside a block):
      keys are the block's own parameter names, and ``get`` registers new ones on it.

    Args:
        prefix: the name prefix of parameters created by :meth:`get` (or, for internal use,
            a mapping to copy).
        shared: a ParameterDict (or dict) searched by :meth:`get` before creating a new
            Parameter.

    Example::

        params = ParameterDict('enc_')
        w = params.get('weight', shape=(4, 3))        # Parameter 'enc_weight'
        tied = ParameterDict('enc_', shared=params)
        assert tied.get('weight') is w
    """

    def __init__(self, prefix='', shared=None, owner=None):
        if isinstance(prefix, str):
            super().__init__()
        else:                       # a mapping of name -> Parameter (collect_params)
            super().__init__(prefix)
            prefix = owner.prefix if owner is not None else ''
        self._prefix = prefix
        self._shared = shared
        self._owner = owner
        self._aliases = {}         # other names of tied Parameters (see collect_params)

    @property
    def prefix(self):
        """The prefix of names created by :meth:`get`."""
        return self._prefix

    def _get_impl(self, key):
        if key in self:
            return self[key]
        shared = self._shared
        if shared is not None and key in shared:
            param = shared[key]
            OrderedDict.__setitem__(self, key, param)
            return param
        return None

    def get(self, name, **kwargs):
        """The Parameter ``name`` (prefixed for a standalone dict), created if absent.

        Keyword arguments are Parameter attributes: a new Parameter is built with them; an
        existing one must agree (a 0 in a shape is filled in by the other's size), else
        ``ValueError`` names the attribute.
        """
        if self._owner is not None:
            key = name
        else:
            key = self._prefix + name
        param = self._get_impl(key)
        if param is None:
            param = Parameter(key, **kwargs)
            if self._owner is not None:
                param = self._owner._register_param(name, param)
            OrderedDict.__setitem__(self, key, param)
            return param
        for attr, value in kwargs.items():
            _merge_attribute(param, key, attr, value)
        return param

    def get_constant(self, name, value=None):
        """The Constant ``name``, created from ``value`` if absent (``KeyError`` without one)."""
        key = name if self._owner is not None else self._prefix + name
        param = self._get_impl(key)
        if param is None:
            if value is None:
                raise KeyError(f'No constant named {key!r}; give a value to create one')
            param = Constant(value, name=key)
            if self._owner is not None:
                param = self._owner._register_param(name, param)
            OrderedDict.__setitem__(self, key, param)
        elif value is not None:
            if not isinstance(param, Constant):
                raise ValueError(f'Parameter {key!r} already exists but is not a Constant')
            value = value.asnumpy() if isinstance(value, NDArray) else np.asarray(value)
            if param.shape != value.shape or not (param.value == value).all():
                raise ValueError(f'Constant {key!r} already exists with another value')
        return param

    def update(self, other):
        """Add the Parameters of ``other``; a name already bound to another Parameter is a
        ``ValueError`` (two different weights cannot share a name)."""
        items = list(other.items())
        for k, v in items:
            if k in self and self[k] is not v:
                raise ValueError(f'Cannot update the ParameterDict with another one holding a '
                                 f'different Parameter under the same name {k!r}')
        for k, v in items:
            OrderedDict.__setitem__(self, k, v)

    def initialize(self, init=None, ctx=None, verbose=False, force_reinit=False):
        """Initialize every Parameter (``init`` is the default for those without their own
        initializer; Gluon's is ``Uniform(0.07)``). Shared Parameters are initialized once."""
        default = _init.create(init) if init is not None else _init.Uniform()
        seen = set()
        for p in self.values():
            if id(p) in seen:
                continue
            seen.add(id(p))
            p.initialize(None, ctx, default, force_reinit=force_reinit)

    def zero_grad(self):
        """Set every gradient buffer to zero."""
        for p in self.values():
            p.zero_grad()

    def reset_ctx(self, ctx):
        """Move every Parameter to ``ctx`` (a Context or a list)."""
        for p in _unique(self.values()):
            p.reset_ctx(ctx)

    def setattr(self, name, value):
        """Set an attribute (e.g. ``grad_req``, ``lr_mult``) on every parameter."""
        for p in self.values():
            setattr(p, name, value)

    def list_ctx(self):
        """Every context some Parameter lives on."""
        ctxs = []
        for p in self.values():
            for c in p.list_ctx():
                if c not in ctxs:
                    ctxs.append(c)
        return ctxs

    def save(self, filename, strip_prefix=''):
        """Save the Parameters' data under their names (``strip_prefix`` removed) to an
        ``.npz`` file, atomically (``nd.save``'s format)."""
        arrays = OrderedDict()
        for key, p in self.items():
            if not key.startswith(strip_prefix):
                raise ValueError(f'Prefix {strip_prefix!r} is to be stripped before saving, '
                                 f'but Parameter {key!r} does not start with it')
            arrays[key[len(strip_prefix):]] = p.data(p.list_ctx()[0]).asnumpy()
        save_npz(filename, arrays)

    def load(self, filename, ctx=None, allow_missing=False, ignore_extra=False,
             restore_prefix='', cast_dtype=False, dtype_source='current'):
        """Load Parameters saved by :meth:`save` (or MXNet's ``.params`` format); each name
        in the file gets ``restore_prefix`` prepended. Missing or extra names are errors
        unless ``allow_missing`` / ``ignore_extra``."""
        if not isinstance(filename, (str, os.PathLike)):
            return self.load_dict(filename, ctx, allow_missing, ignore_extra, restore_prefix,
                                  None, cast_dtype, dtype_source)
        loaded = read_parameter_file(filename, self, allow_missing, ignore_extra,
                                     'ParameterDict',
                                     lambda names: {k: restore_prefix + k for k in names})
        self.load_dict(loaded, ctx, True, True, '', filename, cast_dtype, dtype_source)

    def load_dict(self, param_dict, ctx=None, allow_missing=False, ignore_extra=False,
                  restore_prefix='', filename=None, cast_dtype=False, dtype_source='current'):
        """Load from an in-memory dict of name -> NDArray or array (see :meth:`load`)."""
        source = f'file {filename!r}' if isinstance(filename, str) else 'param_dict'
        arrays = {}
        for k, v in param_dict.items():
            k = k[4:] if k.startswith(('arg:', 'aux:')) else k
            arrays[restore_prefix + k] = v.asnumpy() if isinstance(v, NDArray) else to_host(v)
        if not allow_missing:
            missing = [k for k in self if k not in arrays]
            if missing:
                raise ValueError(f'{source} lacks parameter(s) {", ".join(missing)} '
                                 '(use allow_missing=True to skip them)')
        extra = [k for k in arrays if k not in self]
        if extra and not ignore_extra:
            raise ValueError(f'{source} has parameter(s) {", ".join(extra)} that this '
                             'ParameterDict does not (use ignore_extra=True to skip them)')
        for key, p in self.items():
            if key in arrays:
                p._load_init(arrays[key], ctx, cast_dtype, dtype_source, source)

    def __repr__(self):
        body = '\n'.join(f'  {k}: {p!r}' for k, p in self.items())
        head = f'{self._prefix} ' if self._prefix else ''
        return f'ParameterDict({head}\n{body}\n)'


def _unique(params):
    seen = set()
    for p in params:
        if id(p) not in seen:
            seen.add(id(p))
            yield p


def _merge_attribute(param, key, attr, value):
    """Check a requested attribute against an existing Parameter's (Gluon's rule: unknown
    sizes (0) are filled in from the other side; everything else must agree)."""
    if attr == 'shape' and value is not None:
        value = (value,) if isinstance(value, (int, np.integer)) else tuple(value)
        old = param.shape
        if old is None:
            param.shape = value
            return
        if len(old) == len(value) and all(a == b or a in (0, -1) or b in (0, -1)
                                          for a, b in zip(old, value)):
            param._shape = tuple(b if a in (0, -1) else a for a, b in zip(old, value))
            return
        raise ValueError(f'Cannot retrieve Parameter {key!r}: requested shape {value} does '
                         f'not match its shape {old}')
    if attr == 'init':            # an initializer never conflicts: the first one stays
        if param.init is None:
            param.init = value
        return
    existing = getattr(param, attr, None)
    if attr == 'dtype' and value is not None and np.dtype(value) == np.dtype(existing):
        return
    if existing is None:
        setattr(param, attr, value)
    elif value is not None and value != existing:
        raise ValueError(f'Cannot retrieve Parameter {key!r}: requested {attr}={value!r} does '
                         f'not match its {attr}={existing!r}')
