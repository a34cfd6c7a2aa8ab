"""Block and HybridBlock: the base of every layer and model.

A Block registers the Blocks and Parameters assigned to its attributes, in order. Its
``collect_params()`` names each parameter by its path: ``features.3.bias`` for the ``bias``
of child ``3`` of child ``features``.

``hybridize()`` is accepted for Gluon compatibility and records the flag, but xpnet has no
symbolic graph to compile: every call runs imperatively, op by op, on NumPy/CuPy. Nothing is
cached or fused, and hybrid_forward blocks receive ``xpnet.nd`` as ``F``.

Example::

    class MLP(nn.Block):
        def __init__(self):
            super().__init__()
            self.hidden = nn.Dense(64, activation='relu')
            self.out = nn.Dense(10)

        def forward(self, x):
            return self.out(self.hidden(x))

    net = MLP(); net.initialize()
    list(net.collect_params())    # ['hidden.weight', 'hidden.bias', 'out.weight', 'out.bias']
"""
import contextlib
import io
import os
import re
import warnings
from collections import OrderedDict

import numpy as np

from .. import initializer as _init
from ..backend import Context, run_on, to_host
from ..ndarray import NDArray
from ..serialization import FileFormatError, load_npz, save_npz
from .mxnet_params import is_mxnet_params, read_mxnet_params
from .parameter import DeferredInitializationError, Parameter, ParameterDict

__all__ = ['Block', 'HybridBlock', 'ParameterFileError']

_name_counts = {}


class ParameterFileError(FileFormatError):
    """A parameter file is unreadable, or does not match the block's parameters."""


def _save_arrays(filename, arrays):
    """Write ``{name: host array}`` to ``filename`` as ``.npz``, atomically."""
    save_npz(filename, arrays)


def _load_arrays(filename):
    """``{name: host array}`` from an ``.npz`` file (or an MXNet ``.params`` file), with
    pickling disabled; a clear :class:`ParameterFileError` if the file is truncated, corrupt
    or not a parameter file."""
    if os.path.exists(filename) and is_mxnet_params(filename):   # Gluon 1.x save_parameters
        try:
            out = read_mxnet_params(filename)
        except Exception as err:
            raise ParameterFileError(f'cannot read parameter file {filename!r}: it is '
                                     f'truncated or corrupt ({err})') from err
    else:
        out = load_npz(filename, what='parameter', error=ParameterFileError)
    return {k[4:] if k.startswith(('arg:', 'aux:')) else k: v for k, v in out.items()}


class Block:
    """Base class for layers and models. Subclasses define ``forward(*args)``.

    Args:
        prefix, params: accepted for Gluon 1.x code; ``params`` (a dict of Parameters,
            e.g. another block's ``collect_params()``) shares those parameters.
    """

    def __init__(self, prefix=None, params=None):
        object.__setattr__(self, '_children', OrderedDict())
        object.__setattr__(self, '_reg_params', OrderedDict())
        object.__setattr__(self, '_forward_hooks', OrderedDict())
        object.__setattr__(self, '_forward_pre_hooks', OrderedDict())
        cls = type(self).__name__.lower()
        if prefix is None:
            n = _name_counts.get(cls, 0)
            _name_counts[cls] = n + 1
            prefix = f'{cls}{n}_'
        object.__setattr__(self, '_prefix', prefix)
        object.__setattr__(self, '_shared_params', params)
        object.__setattr__(self, '_active', False)

    # ---- registration ------------------------------------------------------------------------
    def __setattr__(self, name, value):
        children = self.__dict__.get('_children')
        if children is None:
            raise RuntimeError(f'{type(self).__name__}.__init__ must call super().__init__() '
                               'before assigning attributes')
        if isinstance(value, Block):
            self._reg_params.pop(name, None)
            children[name] = value
        elif isinstance(value, Parameter):
            children.pop(name, None)
            for k, p in self._reg_params.items():
                if p is value:   # registered through self.params.get(...) under its own name
                    break
            else:
                value = self._register_param(name, value)   # may be a shared parameter
        elif name in children and value is None:
            del children[name]
        object.__setattr__(self, name, value)

    def __delattr__(self, name):
        self._children.pop(name, None)
        self._reg_params.pop(name, None)
        object.__delattr__(self, name)

    def _register_param(self, name, param):
        shared = self._shared_params
        if shared is not None:
            for key in (name, self._prefix + name):
                if key in shared:
                    param = shared[key]
                    break
        self._reg_params[name] = param
        return param

    def register_child(self, block, name=None):
        """Register ``block`` as a child (named by its index by default)."""
        if name is None:
            name = str(len(self._children))
        self._children[name] = block
        return block

    def register_forward_hook(self, hook):
        """``hook(block, inputs, output)`` runs after each forward; returns a removable handle."""
        return _HookHandle(self._forward_hooks, hook)

    def register_forward_pre_hook(self, hook):
        """``hook(block, inputs)`` runs before each forward."""
        return _HookHandle(self._forward_pre_hooks, hook)

    # ---- names -------------------------------------------------------------------------------
    @property
    def prefix(self):
        return self._prefix

    @property
    def name(self):
        return self._prefix[:-1] if self._prefix.endswith('_') else self._prefix

    def name_scope(self):
        """Accepted for Gluon 1.x code; structural names need no scope."""
        return contextlib.nullcontext(self)

    @property
    def params(self):
        """This block's own parameters (Gluon 1.x: ``self.params.get('w', shape=...)``)."""
        return ParameterDict(self._reg_params, owner=self)

    # ---- parameters --------------------------------------------------------------------------
    def _collect(self, prefix, out, seen_blocks):
        for name, p in self._reg_params.items():
            out.setdefault(prefix + name, p)
        for name, child in self._children.items():
            if id(child) in seen_blocks:
                continue
            child._collect(prefix + name + '.', out, seen_blocks | {id(child)})
        return out

    def collect_params(self, select=None):
        """An ordered dict of structural name -> Parameter for this block and its children.

        ``select`` is a regular expression (or several joined by '|') matched against the
        names, e.g. ``'.*weight'`` or ``'features.0.*'``.
        """
        params = self._collect('', OrderedDict(), frozenset({id(self)}))
        if select is not None:
            pattern = re.compile(select)
            params = OrderedDict((k, v) for k, v in params.items() if pattern.match(k))
        return ParameterDict(params)

    def initialize(self, init=None, ctx=None, verbose=False, force_reinit=False):
        """Initialize every parameter on ``ctx`` (a Context or a list: one replica each).

        ``init`` (object or name) is the default for parameters without an initializer of
        their own; Gluon's default is ``Uniform(0.07)``. Parameters whose shape depends on the
        input are initialized at the first forward.
        """
        default = _init.create(init) if init is not None else _init.Uniform()
        seen = set()
        for name, p in self.collect_params().items():
            if id(p) in seen:
                continue
            seen.add(id(p))
            if p.is_initialized and not force_reinit:
                warnings.warn(f'Parameter {name!r} is already initialized, ignoring. Set '
                              'force_reinit=True to re-initialize.', stacklevel=2)
                continue
            p.initialize(None, ctx, default, force_reinit=force_reinit)
        if verbose:
            print(self.summary_text() if hasattr(self, 'summary_text') else repr(self))

    def share_parameters(self, shared):
        """Use the Parameters in ``shared`` (structural name -> Parameter) in place of this
        block's parameters of the same names. Returns self."""
        if shared is None:
            return self
        shared = dict(shared)
        self._share('', shared)
        return self

    def _share(self, prefix, shared):
        for name in list(self._reg_params):
            key = prefix + name
            if key in shared:
                p = shared[key]
                self._reg_params[name] = p
                if name in self.__dict__:
                    object.__setattr__(self, name, p)
        for name, child in self._children.items():
            child._share(prefix + name + '.', shared)

    def save_parameters(self, filename, deduplicate=False):
        """Save the parameters to an ``.npz`` file, written atomically (see ``load_parameters``)."""
        arrays = OrderedDict()
        seen = {}
        for name, p in self.collect_params().items():
            if deduplicate and id(p) in seen:
                continue
            seen[id(p)] = name
            try:
                arrays[name] = p.data(p.list_ctx()[0]).asnumpy()
            except DeferredInitializationError:
                raise RuntimeError(f'cannot save parameter {name!r}: its shape is not known yet; '
                                   'run a forward pass first') from None
        _save_arrays(filename, arrays)

    def load_parameters(self, filename, ctx=None, allow_missing=False, ignore_extra=False,
                        cast_dtype=False, dtype_source='current'):
        """Load parameters saved by ``save_parameters``.

        A parameter absent from the file is an error unless ``allow_missing``; a name in the
        file that the block lacks is an error unless ``ignore_extra``; a shape mismatch is
        always an error. Each error names the parameters concerned.
        """
        loaded = _load_arrays(filename) if isinstance(filename, str) else dict(filename)
        params = self.collect_params()
        missing = [k for k in params if k not in loaded]
        if missing and not allow_missing:
            raise ParameterFileError(
                f'parameter file {filename!r} lacks {len(missing)} parameter(s) of this '
                f'{type(self).__name__}: {", ".join(missing)} (use allow_missing=True to skip)')
        extra = [k for k in loaded if k not in params]
        if extra and not ignore_extra:
            raise ParameterFileError(
                f'parameter file {filename!r} has {len(extra)} parameter(s) this '
                f'{type(self).__name__} does not: {", ".join(extra)} '
                '(use ignore_extra=True to skip them)')
        for name, p in params.items():
            if name not in loaded:
                continue
            value = loaded[name]
            if p.shape is not None and (len(p.shape) != value.ndim or any(
                    s not in (0, None) and s != v for s, v in zip(p.shape, value.shape))):
                raise ParameterFileError(
                    f'parameter {name!r} has shape {p.shape} in this '
                    f'{type(self).__name__} but {value.shape} in {filename!r}')
        for name, p in params.items():
            if name not in loaded:
                continue
            value = loaded[name]
            if cast_dtype and dtype_source == 'saved':
                p.dtype = value.dtype
            if not p.is_initialized:
                p.shape = value.shape
                if p._deferred is not None:
                    if ctx is not None:
                        p.reset_ctx(ctx)
                    p._finish_deferred_init()
                else:
                    p.initialize(_init.Constant(0), ctx if ctx is not None else None)
            elif ctx is not None and [Context(c) for c in
                                      (ctx if isinstance(ctx, (list, tuple)) else [ctx])] \
                    != p.list_ctx():
                p.reset_ctx(ctx)
            p.set_data(value.astype(p.dtype, copy=False))

    # Gluon 1.x names
    save_params = save_parameters
    load_params = load_parameters

    def load_dict(self, param_dict, ctx=None, allow_missing=False, ignore_extra=False):
        """Load from an in-memory dict of name -> NDArray/array."""
        arrays = {k: (v.asnumpy() if isinstance(v, NDArray) else to_host(v))
                  for k, v in param_dict.items()}
        self.load_parameters(arrays, ctx, allow_missing, ignore_extra)

    # ---- bulk operations ---------------------------------------------------------------------
    def cast(self, dtype):
        """Cast every parameter (and so the computation) to ``dtype``."""
        for p in self.collect_params().values():
            p.cast(dtype)
        for child in self._children.values():
            child._on_cast(dtype)
        self._on_cast(dtype)
        return self

    def _on_cast(self, dtype):
        pass

    def zero_grad(self):
        """Set all gradient buffers to zero."""
        for p in self.collect_params().values():
            p.zero_grad()

    def reset_ctx(self, ctx):
        """Move every parameter to ``ctx``."""
        for p in self.collect_params().values():
            p.reset_ctx(ctx)

    def apply(self, fn):
        """Call ``fn(block)`` on every child (recursively) and then on self."""
        for child in self._children.values():
            child.apply(fn)
        fn(self)
        return self

    def hybridize(self, active=True, **kwargs):
        """Record the hybridize flag (and pass it to children). xpnet always runs
        imperatively: there is no graph to build, so this changes no result or speed."""
        object.__setattr__(self, '_active', bool(active))
        for child in self._children.values():
            child.hybridize(active, **kwargs)

    def export(self, path, epoch=0):
        """Save the parameters as ``{path}-{epoch:04d}.params`` (no symbol file: xpnet has
        no symbolic graph)."""
        self.save_parameters(f'{path}-{epoch:04d}.params')

    # ---- calling -----------------------------------------------------------------------------
    def __call__(self, *args, **kwargs):
        for hook in self._forward_pre_hooks.values():
            hook(self, args)
        ctx = args[0]._ctx if args and type(args[0]) is NDArray else None
        out = self.forward(*args, **kwargs) if ctx is None or ctx._rt is None else \
            run_on(ctx, self.forward, *args, **kwargs)     # on the input's device
        for hook in self._forward_hooks.values():
            hook(self, args, out)
        return out

    def forward(self, *args):
        raise NotImplementedError(f'{type(self).__name__} must implement forward()')

    # ---- introspection -------------------------------------------------------------------------
    def __repr__(self):
        lines = [f'{type(self).__name__}(']
        for name, child in self._children.items():
            sub = repr(child).replace('\n', '\n  ')
            lines.append(f'  ({name}): {sub}')
        if len(lines) == 1:
            return f'{type(self).__name__}()'
        return '\n'.join(lines) + '\n)'

    def summary(self, *inputs):
        """Print a table of every layer's output shape and parameter count for ``inputs``."""
        print(self.summary_text(*inputs))

    def summary_text(self, *inputs):
        rows = []
        hooks = []

        def shape_of(out):
            if isinstance(out, NDArray):
                return str(out.shape)
            if isinstance(out, (list, tuple)):
                return ', '.join(shape_of(o) for o in out)
            return '-'

        def make_hook(path):
            def hook(block, args, out):
                n = 0
                for p in block._reg_params.values():
                    if p.shape is not None and all(p.shape):
                        n += int(np.prod(p.shape))
                rows.append((path, type(block).__name__, shape_of(out), n))
            return hook

        def register(block, path):
            for name, child in block._children.items():
                register(child, f'{path}.{name}' if path else name)
            hooks.append(block.register_forward_hook(make_hook(path or '(total)')))
        register(self, '')
        try:
            from .. import autograd
            with autograd.pause():
                self(*inputs)
        finally:
            for h in hooks:
                h.detach()
        top = rows.pop() if rows and rows[-1][0] == '(total)' else None
        header = ('Layer (type)', 'Output Shape', 'Param #')
        body = [(f'{path} ({kind})', shp, f'{n:,}') for path, kind, shp, n in rows]
        inputs_row = ('Input', shape_of(list(inputs)) if len(inputs) > 1 else shape_of(inputs[0]),
                      '0')
        table = [inputs_row] + body
        w = [max(len(r[i]) for r in table + [header]) + 2 for i in range(3)]
        sep = '-' * sum(w)
        out = io.StringIO()
        print(sep, file=out)
        print(''.join(h.rjust(w[i]) if i else h.ljust(w[i]) for i, h in enumerate(header)),
              file=out)
        print('=' * sum(w), file=out)
        for r in table:
            print(''.join(c.rjust(w[i]) if i else c.ljust(w[i]) for i, c in enumerate(r)),
                  file=out)
        print('=' * sum(w), file=out)
        seen, total, trainable = set(), 0, 0
        for p in self.collect_params().values():
            if id(p) in seen or p.shape is None:
                continue
            seen.add(id(p))
            n = int(np.prod(p.shape))
            total += n
            if p.grad_req != 'null':
                trainable += n
        print('Parameters in forward computation graph, duplicate included', file=out)
        print(f'   Total params: {total:,}', file=out)
        print(f'   Trainable params: {trainable:,}', file=out)
        print(f'   Non-trainable params: {total - trainable:,}', file=out)
        if top is not None:
            print(f'Output shape: {top[2]}', file=out)
        print(sep, file=out)
        return out.getvalue()


class _HookHandle:
    _next = 0

    def __init__(self, registry, hook):
        _HookHandle._next += 1
        self._id = _HookHandle._next
        self._registry = registry
        registry[self._id] = hook

    def detach(self):
        self._registry.pop(self._id, None)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.detach()


class HybridBlock(Block):
    """A Block whose computation can be written as ``hybrid_forward(F, x, *args, **params)``.

    Either override ``forward`` (Gluon 2 style) or ``hybrid_forward`` (Gluon 1 style); in the
    latter, ``F`` is ``xpnet.nd`` and each of the block's own parameters is passed by name as
    its data on the input's device.
    """

    def forward(self, x, *args):
        if type(self).hybrid_forward is HybridBlock.hybrid_forward:
            raise NotImplementedError(f'{type(self).__name__} must implement forward() or '
                                      'hybrid_forward()')
        from .. import nd
        ctx = x.context if isinstance(x, NDArray) else None
        params = {}
        for name, p in self._reg_params.items():
            try:
                params[name] = p.data(ctx)
            except DeferredInitializationError:
                raise DeferredInitializationError(
                    f'{type(self).__name__}: parameter {name!r} has unknown shape {p.shape}; '
                    'hybrid_forward blocks need full parameter shapes (or override forward() '
                    'and set the shape from the input)') from None
        return self.hybrid_forward(nd, x, *args, **params)

    def hybrid_forward(self, F, x, *args, **kwargs):
        raise NotImplementedError

    def infer_shape(self, *args):
        """Run the deferred shape inference by calling the block once."""
        self(*args)

    def optimize_for(self, x, *args, backend=None, **kwargs):
        """Accepted for Gluon compatibility; equivalent to ``hybridize()`` and a forward."""
        self.hybridize(True)
        return self(x, *args)
