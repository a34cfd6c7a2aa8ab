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
import io
import os
import re
import threading
import warnings
from collections import OrderedDict

import numpy as np

from .. import initializer as _init
from ..backend import current_context, run_on, to_host
from ..ndarray import NDArray, array
from ..serialization import save_npz
from .param_file import ParameterFileError, check_parameter_shapes, read_parameter_file
from .parameter import DeferredInitializationError, Parameter, ParameterDict

__all__ = ['Block', 'HybridBlock', 'ParameterFileError']

_name_counts = {}     # top-level block names: hint -> next number (Gluon's NameManager)


class _ScopeState(threading.local):
    current = None       # the _NameScope being filled, per thread


_scope_state = _ScopeState()

# Gluon 1.x name hints (``Block._alias``) of xpnet layer classes whose hint is not their
# lower-cased class name, by the name of the class that sets it.
_ALIASES = {'_Conv': 'conv', '_Pooling': 'pool', 'DeformableConvolution': 'deformable_conv',
            'ModulatedDeformableConvolution': 'modulated_deformable_conv',
            'RNNCell': 'rnn', 'LSTMCell': 'lstm', 'GRUCell': 'gru', 'DropoutCell': 'dropout',
            'ZoneoutCell': 'zoneout', 'VariationalDropoutCell': 'vardrop',
            'LSTMPCell': 'lstmp', '_ConvRNNCell': 'conv_rnn', '_ConvLSTMCell': 'conv_lstm',
            '_ConvGRUCell': 'conv_gru'}


class _NameScope:
    """``block.name_scope()``: children created inside get prefixes ``block.prefix +
    hint + count + '_'`` (Gluon 1.x's ``_BlockScope``). A block with an empty prefix
    opens no scope of its own, as in Gluon."""

    def __init__(self, block):
        self._block = block
        self._counter = {}
        self._old = None

    def _child_prefix(self, prefix, hint):
        if prefix is None:
            count = self._counter.get(hint, 0)
            self._counter[hint] = count + 1
            prefix = f'{hint}{count}_'
        return self._block._prefix + prefix, self._block._params_prefix + prefix

    def __enter__(self):
        if not self._block._empty_prefix:
            self._old = _scope_state.current
            _scope_state.current = self
        return self

    def __exit__(self, *exc):
        if not self._block._empty_prefix:
            _scope_state.current = self._old
        return False


def _has_host_array(values):
    return any(isinstance(v, np.ndarray) or isinstance(v, (list, tuple)) and
               _has_host_array(v) for v in values)


def _first_ndarray(values):
    for v in values:
        found = v if isinstance(v, NDArray) else \
            _first_ndarray(v) if isinstance(v, (list, tuple)) else None
        if found is not None:
            return found
    return None


# Gluon 1.9's RNN/LSTM/GRU layers save their parameters under the names of the cells they
# replaced: ``_unfused.<layer>.<gate>_<kind>`` (``_unfused.<layer>.<l|r>_cell...`` when
# bidirectional) for xpnet's (and the layers' own) ``l<layer>_<gate>_<kind>``.
_UNFUSED = re.compile(r'(.*?)_unfused\.(\d+)\.(?:(l|r)_cell\.)?(i2h|h2h|h2r)_(weight|bias)\Z')


def _from_unfused_names(loaded, params):
    """Rename the keys of a Gluon 1.9 RNN layer's file to the layer's parameter names."""
    out = {}
    for key, value in loaded.items():
        m = _UNFUSED.match(key)
        if m is not None and key not in params:
            head, layer, direction, gate, kind = m.groups()
            name = f'{head}{direction or "l"}{layer}_{gate}_{kind}'
            key = name if name in params else key
        out[key] = value
    return out


def _all_names(shared):
    """Name -> Parameter of a ``params=`` / ``share_parameters`` argument, including the
    other names of tied Parameters that ``collect_params()`` lists once."""
    names = dict(shared.items())
    for k, p in getattr(shared, '_aliases', {}).items():
        names.setdefault(k, p)
    return names


class Block:
    """Base class for layers and models. Subclasses define ``forward(*args)``.

    Args:
        prefix: the block's name prefix (``block.name`` is it without the trailing ``_``).
            By default Gluon 1.x's: ``dense0_`` at top level, ``<parent prefix>dense0_``
            for a child created inside the parent's ``with self.name_scope():``. Names do
            not affect ``collect_params()`` keys, which are structural.
        params: Parameters to share (Gluon 1.x): a dict such as another block's
            ``collect_params()`` or ``.params``. A parameter of this block, or of a child
            assigned to it, whose structural name is a key of ``params`` *is* that
            Parameter (tied weights are one object), e.g. ``Net(params=other.collect_params())``
            or ``nn.Dense(vocab, params=embedding.params)``.
    """

    def __init__(self, prefix=None, params=None):
        object.__setattr__(self, '_children', OrderedDict())
        object.__setattr__(self, '_reg_params', OrderedDict())
        object.__setattr__(self, '_forward_hooks', OrderedDict())
        object.__setattr__(self, '_forward_pre_hooks', OrderedDict())
        object.__setattr__(self, '_empty_prefix', prefix == '')
        scope = _scope_state.current
        if scope is None:
            if prefix is None:
                hint = self._alias()
                n = _name_counts.get(hint, 0)
                _name_counts[hint] = n + 1
                prefix = f'{hint}{n}_'
            params_prefix = prefix
        else:
            prefix, params_prefix = scope._child_prefix(prefix, self._alias())
        if params is not None:
            params_prefix = getattr(params, 'prefix', params_prefix)
        object.__setattr__(self, '_prefix', prefix)
        object.__setattr__(self, '_params_prefix', params_prefix)
        object.__setattr__(self, '_shared_params', params)
        object.__setattr__(self, '_scope', _NameScope(self))
        object.__setattr__(self, '_active', False)

    def _alias(self):
        """The hint Gluon 1.x names this block by (``dense`` for Dense, ``conv`` for the
        convolutions, ``pool`` for pooling...)."""
        for klass in type(self).__mro__:
            alias = _ALIASES.get(klass.__name__)
            if alias is not None and klass.__module__.startswith('xpnet.'):
                return alias
        return type(self).__name__.lower()

    # ---- registration ------------------------------------------------------------------------
    def __setattr__(self, name, value):
        children = self.__dict__.get('_children')
        if children is None:
            raise RuntimeError(f'{type(self).__name__}.__init__ must call super().__init__() '
                               'before assigning attributes')
        if isinstance(value, Block):
            self._reg_params.pop(name, None)
            children[name] = value
            self._share_child(name, value)
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
            for key in (name, getattr(shared, 'prefix', '') + name):
                if key in shared and isinstance(shared[key], Parameter):
                    param = shared[key]
                    break
        self._reg_params[name] = param
        return param

    def _share_child(self, name, child):
        """A child assigned to a block built with ``params=`` takes the shared Parameters
        under its structural names (and so do the children it gets later)."""
        shared = self._shared_params
        if shared is None:
            return
        lead = name + '.'
        sub = {k[len(lead):]: p for k, p in _all_names(shared).items() if k.startswith(lead)}
        if sub:
            child._share('', sub)
            if child._shared_params is None:
                object.__setattr__(child, '_shared_params', sub)

    def register_child(self, block, name=None):
        """Register ``block`` as a child (named by its index by default)."""
        if name is None:
            name = str(len(self._children))
        self._children[name] = block
        self._share_child(name, block)
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
        """Gluon 1.x's naming scope: blocks created inside get this block's prefix (see
        ``prefix``). Structural parameter names need no scope; sharing (``params=``)
        works with or without one."""
        return self._scope

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

    def _structural_params(self):
        """Every structural name -> Parameter; a shared Parameter appears under each of its
        names (what ``save_parameters`` writes, as Gluon 1.x does)."""
        return self._collect('', OrderedDict(), frozenset({id(self)}))

    def collect_params(self, select=None):
        """An ordered dict of structural name -> Parameter for this block and its children.

        Each Parameter appears once: a shared (tied) one under the first of its structural
        names, as Gluon 1.x's ``collect_params`` lists it once, so loops over
        ``collect_params().values()`` (gradient clipping, ``Trainer``) see it once. The
        other names are kept for sharing (``Net(params=other.collect_params())``).
        ``select`` is a regular expression (or several joined by '|') matched against the
        names, e.g. ``'.*weight'`` or ``'features.0.*'``.
        """
        full = self._structural_params()
        if select is not None:
            pattern = re.compile(select)
            full = OrderedDict((k, v) for k, v in full.items() if pattern.match(k))
        unique, aliases, seen = OrderedDict(), OrderedDict(), set()
        for name, p in full.items():
            if id(p) in seen:
                aliases[name] = p
            else:
                seen.add(id(p))
                unique[name] = p
        out = ParameterDict(unique)
        out._prefix = self._prefix
        out._aliases = aliases
        return out

    def _gluon_names(self):
        """Structural name -> Gluon 1.x's prefixed parameter name (``resnetv10_conv0_weight``)
        for every parameter, as the block's naming scopes give them."""
        out = OrderedDict()

        def walk(block, path, seen):
            for name, p in block._reg_params.items():
                out.setdefault(path + name, block._params_prefix + name)
            for name, child in block._children.items():
                if id(child) not in seen:
                    walk(child, path + name + '.', seen | {id(child)})
        walk(self, '', frozenset({id(self)}))
        return out

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
        self._share('', _all_names(shared))
        return self

    def _share(self, prefix, shared):
        for name in list(self._reg_params):
            key = prefix + name
            if key in shared and isinstance(shared[key], Parameter):
                old, p = self._reg_params[name], shared[key]
                self._reg_params[name] = p
                for attr, value in list(self.__dict__.items()):
                    if value is old:
                        object.__setattr__(self, attr, p)
        for name, child in self._children.items():
            child._share(prefix + name + '.', shared)

    def save_parameters(self, filename, deduplicate=False):
        """Save the parameters to an ``.npz`` file, written atomically (see ``load_parameters``)."""
        arrays = OrderedDict()
        seen = {}
        for name, p in self._structural_params().items():
            if deduplicate and id(p) in seen:
                continue
            seen[id(p)] = name
            try:
                arrays[name] = p.data(p.list_ctx()[0]).asnumpy()
            except DeferredInitializationError:
                raise RuntimeError(f'cannot save parameter {name!r}: its shape is not known yet; '
                                   'run a forward pass first') from None
        save_npz(filename, arrays)

    def load_parameters(self, filename, ctx=None, allow_missing=False, ignore_extra=False,
                        cast_dtype=False, dtype_source='current'):
        """Load parameters saved by ``save_parameters`` (xpnet's ``.npz`` or Gluon 1.x's
        MXNet ``.params`` file).

        A parameter absent from the file is an error unless ``allow_missing``; a name in the
        file that the block lacks is an error unless ``ignore_extra``; a shape mismatch is
        always an error. Each error names the parameters concerned. ``filename`` may also
        be a dict of name -> host array. A file of Gluon's legacy ``save_params`` format
        (prefixed names such as ``conv0_weight`` relative to the model's prefix, no dots) is
        matched through the Gluon 1.x names of :meth:`name_scope`, as Gluon 1.x's
        ``load_parameters`` does, and the ``_unfused.<layer>.<gate>_<kind>`` names Gluon
        1.9's RNN/LSTM/GRU layers write are read as their ``l<layer>_<gate>_<kind>``
        parameters.

        The file is treated as untrusted: its names, shapes and dtypes are checked against
        the block before any array is read (see :mod:`xpnet.layers.param_file`), so a
        corrupt or crafted file raises :class:`ParameterFileError` at once.
        """
        params = self._structural_params()
        owner = type(self).__name__

        def rename(names):               # file name -> structural name
            names = {k: k for k in names}
            if names and not any('.' in k for k in names):
                names = self._from_legacy_names(names, params)
            return {old: new for new, old in _from_unfused_names(names, params).items()}

        if isinstance(filename, (str, os.PathLike)):
            loaded = read_parameter_file(filename, params, allow_missing, ignore_extra, owner,
                                         rename)
        else:
            names = rename(filename)
            loaded = {names[k]: v for k, v in dict(filename).items()}
            wanted = check_parameter_shapes('<dict>', {k: v.shape for k, v in loaded.items()},
                                            params, allow_missing, ignore_extra, owner)
            loaded = {k: loaded[k] for k in wanted}
        for name, p in params.items():
            if name in loaded:
                p._load_init(loaded[name], ctx, cast_dtype, dtype_source, repr(filename))

    def _from_legacy_names(self, loaded, params):
        """Rename a legacy (Gluon ``save_params``) file's keys to structural names."""
        strip = len(self._prefix)
        legacy = {}
        for name, full in self._gluon_names().items():
            legacy.setdefault(full[strip:] if full.startswith(self._prefix) else full, name)
        if not any(k in legacy and k not in params for k in loaded):
            return loaded      # already structural (a single layer's 'weight', 'bias')
        return {legacy.get(k, k): v for k, v in loaded.items()}

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
        if _has_host_array(args) or kwargs and _has_host_array(tuple(kwargs.values())):
            args, kwargs = self._host_inputs_to_ndarray(args, kwargs)
        for hook in self._forward_pre_hooks.values():
            hook(self, args)
        ctx = args[0]._ctx if args and type(args[0]) is NDArray else None
        out = self.forward(*args, **kwargs) if ctx is None or ctx._rt is None else \
            run_on(ctx, self.forward, *args, **kwargs)     # on the input's device
        for hook in self._forward_hooks.values():
            hook(self, args, out)
        return out

    def _host_inputs_to_ndarray(self, args, kwargs):
        """Plain NumPy arrays among the inputs as NDArrays, as MXNet converts them: on the
        device of the first NDArray input, else of the block's parameters, else the
        current context; float arrays take the parameters' float dtype (default float32)."""
        found = _first_ndarray(args + tuple(kwargs.values()))
        ctx, dtype = (found.context, None) if found is not None else (None, None)
        for p in self.collect_params().values():
            try:
                ctx = ctx or p.list_ctx()[0]
            except RuntimeError:      # not initialized: no device yet
                continue
            if dtype is None and np.dtype(p.dtype).kind == 'f':
                dtype = p.dtype
            break
        ctx = ctx or current_context()

        def convert(x):
            if isinstance(x, np.ndarray):
                return array(x, ctx, dtype if x.dtype.kind == 'f' else None)
            if isinstance(x, (list, tuple)):
                return type(x)(convert(v) for v in x)
            return x
        return convert(args), {k: convert(v) for k, v in kwargs.items()}

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
