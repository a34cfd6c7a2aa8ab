"""Containers and basic layers: Sequential, Dense, Dropout, Embedding, Flatten, Lambda,
Identity, Concurrent, SparseEmbedding."""
import threading

import numpy as np

from .. import ops
from ..ndarray import NDArray
from ..ops.linalg import FUSED_ACTIVATIONS
from .activations import Activation
from .block import Block, HybridBlock
from .parameter import Parameter

__all__ = ['Sequential', 'HybridSequential', 'Dense', 'Dropout', 'Embedding', 'Flatten',
           'Lambda', 'HybridLambda', 'Identity', 'Concurrent', 'HybridConcurrent',
           'SparseEmbedding', 'deferred_shape']


_deferred_lock = threading.Lock()


def deferred_shape(param, shape):
    """Give a deferred parameter its now-known ``shape`` and initialize it (no-op once the
    parameter has data). Layers call this at the first forward; a lock makes it safe when
    several devices run their first forward concurrently."""
    if param._data is None:
        with _deferred_lock:
            if param._data is not None:
                return
            if param._deferred is None:
                raise RuntimeError(f'Parameter {param.name!r} has not been initialized; call '
                                   '.initialize() on the network first')
            param.shape = shape
            param._finish_deferred_init()


def _activation_block(activation):
    if activation is None:
        return None
    if isinstance(activation, Block):
        return activation
    return Activation(activation)


def _fuses_with_relu(block, nxt):
    """Whether ``block`` and the next block ``nxt`` may run as ``block._forward_act(x,
    'relu')``: ``block``'s class marks its own ``forward`` as fusable (BatchNorm: one op
    for the normalization and the ReLU, see ``ops.batch_norm``) and does not override it,
    ``nxt`` is a plain ``Activation('relu')``, and neither has hooks (a hook must see
    ``block``'s own output). The result is the same as calling both."""
    cls = type(block)
    return (cls.forward is getattr(cls, '_relu_fusable_forward', None)
            and type(nxt).forward is Activation.forward and nxt._act_type == 'relu'
            and not (block._forward_hooks or block._forward_pre_hooks
                     or nxt._forward_hooks or nxt._forward_pre_hooks))


class Sequential(Block):
    """Stacks blocks sequentially: ``net.add(nn.Dense(10), nn.Dense(2))``."""

    def __init__(self, prefix=None, params=None):
        super().__init__(prefix=prefix, params=params)

    def add(self, *blocks):
        """Append blocks (each is registered under its index: '0', '1', ...)."""
        for block in blocks:
            if not isinstance(block, Block):
                raise TypeError(f'{type(self).__name__}.add: expected a Block, got '
                                f'{type(block).__name__}')
            self.register_child(block)
        return self

    def forward(self, x, *args):
        blocks = list(self._children.values())
        i = 0
        while i < len(blocks):
            block = blocks[i]
            if not args and i + 1 < len(blocks) and _fuses_with_relu(block, blocks[i + 1]):
                x = block._forward_act(x, 'relu')     # e.g. BatchNorm + ReLU as one op
                i += 2
            else:
                x = block(x, *args)
                i += 1
            args = ()
            if isinstance(x, (tuple, list)) and not isinstance(x, NDArray):
                args = tuple(x[1:])
                x = x[0]
        if args:
            return (x,) + args
        return x

    def __getitem__(self, key):
        layers = list(self._children.values())[key]
        if isinstance(layers, list):
            net = type(self)()
            net.add(*layers)
            return net
        return layers

    def __len__(self):
        return len(self._children)

    def __iter__(self):
        return iter(self._children.values())


class HybridSequential(HybridBlock, Sequential):
    """Sequential for HybridBlocks (identical in xpnet: everything runs imperatively)."""

    forward = Sequential.forward


class Dense(HybridBlock):
    """A fully-connected layer: ``activation(dot(x, weight.T) + bias)``.

    Args:
        units: output size.
        activation: name ('relu', 'sigmoid', 'tanh', 'softrelu', 'softsign') or None.
        use_bias: add a bias vector.
        flatten: collapse all input axes after the first (True) or apply to the last axis.
        dtype: parameter data type.
        weight_initializer, bias_initializer: initializers (objects or names).
        in_units: input size; 0 infers it at the first forward.

    Weight shape is ``(units, in_units)`` as in Gluon.
    """

    def __init__(self, units, activation=None, use_bias=True, flatten=True, dtype='float32',
                 weight_initializer=None, bias_initializer='zeros', in_units=0, **kwargs):
        super().__init__(**kwargs)
        if units < 0:     # Dense(0) constructs, as in Gluon; it fails at the first forward
            raise ValueError(f'Dense: units must be positive, got {units}')
        self._units = units
        self._in_units = in_units
        self._flatten = flatten
        self.weight = Parameter('weight', shape=(units, in_units), dtype=dtype,
                                init=weight_initializer, allow_deferred_init=True)
        self.bias = Parameter('bias', shape=(units,), dtype=dtype, init=bias_initializer,
                              allow_deferred_init=True) if use_bias else None
        self.act = _activation_block(activation)

    def forward(self, x):
        w = self.weight
        if not self._units:
            raise ValueError('Dense: units is 0; the layer has no outputs to compute')
        if w._data is None:
            in_units = int(np.prod(x.shape[1:])) if self._flatten else x.shape[-1]
            deferred_shape(w, (self._units, in_units))
            if self.bias is not None:
                deferred_shape(self.bias, (self._units,))
        ctx = x._ctx
        # A plain Activation child is fused into the product (one node, applied in place);
        # any other activation block runs after it.
        act = self.act
        fused = getattr(act, '_act_type', None) if type(act) is Activation else None
        if fused not in FUSED_ACTIVATIONS:
            fused = None
        out = ops.fully_connected(x, w.data(ctx),
                                  None if self.bias is None else self.bias.data(ctx),
                                  self._flatten, act=fused)
        if act is not None and fused is None:
            out = act(out)
        return out

    def __repr__(self):
        shape = self.weight.shape
        act = f', {self.act._act_type}' if self.act is not None and \
            hasattr(self.act, '_act_type') else ''
        return f'Dense({shape[1] or None} -> {shape[0]}{act})'


class Dropout(HybridBlock):
    """Inverted dropout with probability ``rate`` (active only in training mode).

    ``axes``: axes along which one mask value is shared (e.g. (1,) for the same mask at every
    time step of a (T, N, C)... layout).
    """

    def __init__(self, rate, axes=(), **kwargs):
        super().__init__(**kwargs)
        if not 0 <= rate <= 1:
            raise ValueError(f'Dropout: rate must be in [0, 1], got {rate}')
        self._rate = rate
        self._axes = tuple(axes)

    def forward(self, x):
        return ops.dropout(x, self._rate, self._axes)

    def __repr__(self):
        return f'Dropout(p = {self._rate}, axes={self._axes})'


class Embedding(HybridBlock):
    """Maps integer indices to vectors: (x1, ..., xn) -> (x1, ..., xn, output_dim).

    Args:
        input_dim: vocabulary size.
        output_dim: vector size.
        dtype: parameter dtype.
        weight_initializer: initializer of the (input_dim, output_dim) weight.
        sparse_grad: give the weight a row-sparse gradient (only looked-up rows).
    """

    def __init__(self, input_dim, output_dim, dtype='float32', weight_initializer=None,
                 sparse_grad=False, **kwargs):
        super().__init__(**kwargs)
        if input_dim <= 0 or output_dim <= 0:
            raise ValueError(f'Embedding: input_dim and output_dim must be positive, got '
                             f'{input_dim} and {output_dim}')
        self._input_dim, self._output_dim = input_dim, output_dim
        self._sparse_grad = sparse_grad
        self.weight = Parameter('weight', shape=(input_dim, output_dim), dtype=dtype,
                                init=weight_initializer,
                                grad_stype='row_sparse' if sparse_grad else 'default')

    def forward(self, x):
        return ops.embedding(x, self.weight.data(x.context), self._sparse_grad)

    def __repr__(self):
        return f'Embedding({self._input_dim} -> {self._output_dim}, {self.weight.dtype})'


class SparseEmbedding(Embedding):
    """Embedding whose weight gradient is row-sparse: only the rows looked up in a batch are
    stored and updated (lazy update in SGD/Adam/AdaGrad)."""

    def __init__(self, input_dim, output_dim, dtype='float32', weight_initializer=None,
                 **kwargs):
        super().__init__(input_dim, output_dim, dtype, weight_initializer, sparse_grad=True,
                         **kwargs)


class Flatten(HybridBlock):
    """(N, d1, d2, ...) -> (N, d1*d2*...)."""

    def forward(self, x):
        return ops.flatten(x)

    def __repr__(self):
        return 'Flatten'


class Identity(HybridBlock):
    """Returns its input (useful as a residual branch in HybridConcurrent)."""

    def forward(self, x):
        return x


class Lambda(Block):
    """Wraps a function (or the name of an ``xpnet.nd`` function) as a Block."""

    def __init__(self, function, prefix=None):
        super().__init__(prefix=prefix)
        if isinstance(function, str):
            from .. import nd
            if not hasattr(nd, function):
                raise ValueError(f'Lambda: xpnet.nd has no function {function!r}')
            function = getattr(nd, function)
        elif not callable(function):
            raise ValueError(f'Lambda: expected a function or a name, got {function!r}')
        self._func = function

    def forward(self, *args):
        return self._func(*args)

    def __repr__(self):
        return f'Lambda({getattr(self._func, "__name__", self._func)})'


class HybridLambda(HybridBlock):
    """Wraps ``function(F, x, *args)`` (or an ``xpnet.nd`` function name) as a HybridBlock."""

    def __init__(self, function, prefix=None):
        super().__init__(prefix=prefix)
        from .. import nd
        if isinstance(function, str):
            if not hasattr(nd, function):
                raise ValueError(f'HybridLambda: xpnet.nd has no function {function!r}')
            fn = getattr(nd, function)
            self._func = lambda F, *args: fn(*args)
            self._name_str = function
        elif callable(function):
            self._func = function
            self._name_str = getattr(function, '__name__', repr(function))
        else:
            raise ValueError(f'HybridLambda: expected a function or a name, got {function!r}')

    def forward(self, x, *args):
        from .. import nd
        return self._func(nd, x, *args)

    def __repr__(self):
        return f'HybridLambda({self._name_str})'


class Concurrent(Sequential):
    """Feeds the input to every child and concatenates their outputs along ``axis``."""

    def __init__(self, axis=-1, prefix=None, params=None):
        super().__init__(prefix=prefix, params=params)
        self.axis = axis

    def forward(self, x):
        outs = [block(x) for block in self._children.values()]
        return ops.concat(*outs, dim=self.axis)


class HybridConcurrent(HybridSequential):
    """Concurrent for HybridBlocks."""

    def __init__(self, axis=-1, prefix=None, params=None):
        super().__init__(prefix=prefix, params=params)
        self.axis = axis

    def forward(self, x):
        outs = [block(x) for block in self._children.values()]
        return ops.concat(*outs, dim=self.axis)
