"""Recurrent cells (Gluon's ``gluon.rnn`` cells): the base classes and the RNN, LSTM and GRU
cells, one time step per call and ``unroll`` for a sequence; also the sequence plumbing
(formats, masks) shared by every cell. Containers and modifiers are in ``modifiers``.

A cell is called as ``output, new_states = cell(x_t, states)``. ``unroll`` runs it over a
whole sequence given as one array (layout 'NTC' or 'TNC') or a list of per-step arrays. For
the plain RNN/LSTM/GRU cells, ``unroll`` records the whole sequence as one fused op
(``xpnet.ops.rnn_sequence``: all input-to-hidden products in one matrix multiply); results
and gradients are those of calling the cell step by step.

Example::

    cell = rnn.LSTMCell(100)
    cell.initialize()
    x = nd.random.uniform(shape=(8, 35, 50))                  # (N, T, C)
    outputs, states = cell.unroll(35, x, layout='NTC', merge_outputs=True)
    outputs.shape                                              # (8, 35, 100)
"""
import numbers

from ... import nd as _nd
from ... import ops
from ...ndarray import NDArray
from ..basic import deferred_shape
from ..block import Block, HybridBlock
from ..parameter import Parameter

__all__ = ['RecurrentCell', 'HybridRecurrentCell', 'RNNCell', 'LSTMCell', 'GRUCell']


# ---- sequence plumbing (Gluon's _format_sequence & co) ---------------------------------------

def _check_layout(layout):
    if not isinstance(layout, str) or 'T' not in layout or 'N' not in layout:
        raise ValueError(f"unroll: layout must name the time and batch axes, e.g. 'NTC' or "
                         f"'TNC', got {layout!r}")


def _split_steps(x, axis):
    parts = ops.split(x, x.shape[axis], axis=axis, squeeze_axis=True)
    return parts if isinstance(parts, list) else [parts]


def _format_sequence(length, inputs, layout, merge):
    """Bring ``inputs`` to a list of per-step arrays (``merge`` False), one array along the
    layout's time axis (True), or leave it as given (None). Returns (inputs, time axis,
    batch size)."""
    _check_layout(layout)
    axis = layout.find('T')
    batch_axis = layout.find('N')
    if isinstance(inputs, NDArray):
        if inputs.ndim <= max(axis, batch_axis):
            raise ValueError(f'unroll: input of shape {inputs.shape} has no time axis {axis} '
                             f'for layout {layout!r}')
        batch_size = inputs.shape[batch_axis]
        if length is not None and length != inputs.shape[axis]:
            raise ValueError(f'unroll: length {length} does not match the input\'s time axis '
                             f'{axis} of size {inputs.shape[axis]} (shape {inputs.shape}, '
                             f'layout {layout!r})')
        if merge is False:
            inputs = _split_steps(inputs, axis)
    else:
        inputs = list(inputs)
        if not inputs:
            raise ValueError('unroll: the list of inputs is empty')
        if length is not None and len(inputs) != length:
            raise ValueError(f'unroll: length {length} but {len(inputs)} input steps given')
        batch_size = inputs[0].shape[0]
        if merge is True:
            inputs = ops.stack(*inputs, axis=axis)
    return inputs, axis, batch_size


def _get_begin_state(cell, begin_state, inputs, batch_size):
    if begin_state is None:
        ref = inputs if isinstance(inputs, NDArray) else inputs[0]
        begin_state = cell.begin_state(batch_size=batch_size, ctx=ref.context,
                                       dtype=ref.dtype if ref.dtype.kind == 'f' else 'float32')
    return list(begin_state)


def _mask_sequence_variable_length(data, length, valid_length, time_axis, merge):
    """Zero the padded steps; returns one array (``merge``) or a list of steps."""
    if not isinstance(data, NDArray):
        data = ops.stack(*data, axis=time_axis)
    outputs = ops.sequence_mask(data, valid_length, axis=time_axis)
    if not merge:
        outputs = _split_steps(outputs, time_axis)
    return outputs


def _finish_unroll(outputs, states, all_states, length, valid_length, axis, layout,
                   merge_outputs):
    """The end of a step-by-step unroll: with ``valid_length``, each sequence's states after
    its last valid step and zeroed padded outputs; then the requested output format."""
    if valid_length is not None:
        states = [ops.sequence_last(ops.stack(*ele, axis=0), valid_length, axis=0)
                  for ele in zip(*all_states)]
        outputs = _mask_sequence_variable_length(outputs, length, valid_length, axis, True)
    outputs, _, _ = _format_sequence(length, outputs, layout, merge_outputs)
    return outputs, states


def _reverse_sequences(sequences, length, valid_length=None):
    """Reverse a list of steps in time (each sequence within its valid length)."""
    if valid_length is None:
        return list(reversed(sequences))
    stacked = ops.sequence_reverse(ops.stack(*sequences, axis=0), valid_length, axis=0)
    return _split_steps(stacked, 0)


def _cells_state_info(cells, batch_size):
    return sum([c.state_info(batch_size) for c in cells], [])


def _cells_begin_state(cells, **kwargs):
    return sum([c.begin_state(**kwargs) for c in cells], [])


def _apply_activation(x, activation):
    """Apply an activation given by name ('tanh', 'relu', 'sigmoid', 'softsign', 'softrelu')
    or as a Block / function (e.g. ``nn.LeakyReLU(0.1)``)."""
    if isinstance(activation, str):
        return ops.activation(x, activation)
    if callable(activation):
        return activation(x)
    raise ValueError(f'unknown activation {activation!r}: expected a name such as \'tanh\' '
                     'or a Block')


def _check_activation(activation, owner):
    if isinstance(activation, str):
        if activation not in ('relu', 'sigmoid', 'tanh', 'softrelu', 'softsign'):
            raise ValueError(f"{owner}: unknown activation {activation!r}; expected 'tanh', "
                             "'relu', 'sigmoid', 'softrelu', 'softsign' or a Block")
    elif not callable(activation):
        raise ValueError(f'{owner}: activation must be a name or a Block, got {activation!r}')


def _positive_int(value, name, owner):
    if not isinstance(value, numbers.Integral) or value <= 0:
        raise ValueError(f'{owner}: {name} must be a positive integer, got {value!r}')
    return int(value)


# ---- base classes ------------------------------------------------------------------------------

class RecurrentCell(Block):
    """Abstract base class of recurrent cells.

    Subclasses define ``state_info(batch_size)`` and ``forward(inputs, states)`` returning
    ``(output, new_states)``.

    Args:
        prefix, params: accepted for Gluon 1.x code (``params`` shares parameters).
    """

    def __init__(self, prefix=None, params=None):
        super().__init__(prefix=prefix, params=params)
        self._modified = False
        self.reset()

    def reset(self):
        """Reset before re-using the cell for another sequence (clears step counters and, in
        modifier cells, per-sequence masks)."""
        self._init_counter = -1
        self._counter = -1
        for cell in self._children.values():
            if isinstance(cell, RecurrentCell):
                cell.reset()

    def state_info(self, batch_size=0):
        """Shape and layout of each state: a list of dicts ``{'shape': ..., '__layout__': ...}``."""
        raise NotImplementedError(f'{type(self).__name__} must implement state_info()')

    def _check_unmodified(self):
        if self._modified:
            raise RuntimeError(f'{type(self).__name__} is wrapped by a modifier cell (e.g. '
                               'ZoneoutCell, ResidualCell); call the modifier cell instead')

    def begin_state(self, batch_size=0, func=_nd.zeros, **kwargs):
        """The initial states: ``func(shape=..., **kwargs)`` for each state (zeros by default).

        Args:
            batch_size: size of the batch axis.
            func: state constructor such as ``nd.zeros``, ``nd.ones``, ``nd.random.uniform``.
            **kwargs: passed on to ``func`` (``ctx``, ``dtype``...).
        """
        self._check_unmodified()
        func = _nd.zeros if func is None else func
        states = []
        for info in self.state_info(batch_size):
            self._init_counter += 1
            args = dict(info) if info is not None else {}
            args.pop('__layout__', None)
            args.update(kwargs)
            states.append(func(**args))
        return states

    def __call__(self, inputs, states, *args, **kwargs):
        self._counter += 1
        return super().__call__(inputs, states, *args, **kwargs)

    def unroll(self, length, inputs, begin_state=None, layout='NTC', merge_outputs=None,
               valid_length=None):
        """Run the cell over ``length`` time steps.

        Args:
            length: number of steps.
            inputs: one array with layout ``layout`` ((N, T, ...) for 'NTC', (T, N, ...) for
                'TNC') or a list of ``length`` arrays of shape (N, ...).
            begin_state: list of states (``begin_state()`` zeros by default).
            layout: 'NTC' or 'TNC'.
            merge_outputs: True gives one array in ``layout``, False a list of steps, None
                whatever is natural (a list, or one array with ``valid_length``).
            valid_length: None or (N,) lengths; outputs at ``t >= valid_length[n]`` are zero
                and the returned states are each sequence's last valid ones.

        Returns:
            ``(outputs, states)``.
        """
        self.reset()
        inputs, axis, batch_size = _format_sequence(length, inputs, layout, False)
        begin_state = _get_begin_state(self, begin_state, inputs, batch_size)
        states = begin_state
        outputs = []
        all_states = []
        for i in range(length):
            output, states = self(inputs[i], states)
            outputs.append(output)
            if valid_length is not None:
                all_states.append(states)
        return _finish_unroll(outputs, states, all_states, length, valid_length, axis, layout,
                              merge_outputs)

    def forward(self, inputs, states):
        raise NotImplementedError(f'{type(self).__name__} must implement forward()')


class HybridRecurrentCell(RecurrentCell, HybridBlock):
    """A recurrent cell that may be written as ``hybrid_forward(F, inputs, states, **params)``
    (``F`` is ``xpnet.nd``); xpnet always runs it imperatively."""

    def forward(self, inputs, states):
        if type(self).hybrid_forward is HybridRecurrentCell.hybrid_forward:
            raise NotImplementedError(f'{type(self).__name__} must implement forward() or '
                                      'hybrid_forward()')
        return HybridBlock.forward(self, inputs, states)

    def hybrid_forward(self, F, x, *args, **kwargs):
        raise NotImplementedError


class _GatedCell(HybridRecurrentCell):
    """Shared machinery of RNNCell, LSTMCell, GRUCell and LSTMPCell: parameters, deferred
    input size, the fused step / unroll, and the composed fallback for custom activations."""

    _mode = None          # 'lstm', 'gru', 'rnn_tanh' or 'rnn_relu' when the fused op applies
    _num_gates = 1

    def __init__(self, hidden_size, i2h_weight_initializer, h2h_weight_initializer,
                 i2h_bias_initializer, h2h_bias_initializer, input_size, prefix, params,
                 projection_size=None, h2r_weight_initializer=None):
        super().__init__(prefix=prefix, params=params)
        owner = type(self).__name__
        self._hidden_size = _positive_int(hidden_size, 'hidden_size', owner)
        if not isinstance(input_size, numbers.Integral) or input_size < 0:
            raise ValueError(f'{owner}: input_size must be an integer >= 0, got {input_size!r}')
        self._input_size = int(input_size)
        G = self._num_gates * self._hidden_size
        S = self._hidden_size if projection_size is None else projection_size
        self.i2h_weight = Parameter('i2h_weight', shape=(G, self._input_size),
                                    init=i2h_weight_initializer, allow_deferred_init=True)
        self.h2h_weight = Parameter('h2h_weight', shape=(G, S), init=h2h_weight_initializer,
                                    allow_deferred_init=True)
        if projection_size is not None:
            self.h2r_weight = Parameter('h2r_weight', shape=(projection_size, self._hidden_size),
                                        init=h2r_weight_initializer, allow_deferred_init=True)
        self.i2h_bias = Parameter('i2h_bias', shape=(G,), init=i2h_bias_initializer,
                                  allow_deferred_init=True)
        self.h2h_bias = Parameter('h2h_bias', shape=(G,), init=h2h_bias_initializer,
                                  allow_deferred_init=True)

    def _param(self, name):
        # _reg_params holds the parameter actually used (a shared one when params= was given).
        return self._reg_params[name]

    def _weights(self, ctx, in_size):
        """The parameters' data on ``ctx``, finishing deferred initialization with the
        now-known input size."""
        w = self._param('i2h_weight')
        if w._data is None:
            deferred_shape(w, (self._num_gates * self._hidden_size, in_size))
        return {name: p.data(ctx) for name, p in self._reg_params.items()}

    def _custom_hybrid_forward(self):
        return type(self).hybrid_forward is not HybridRecurrentCell.hybrid_forward

    def _fused_mode(self):
        """The fused op's mode, or None when the cell must run op by op."""
        return self._mode

    def _fusable(self):
        return (self._fused_mode() is not None and type(self).forward is _GatedCell.forward
                and not self._custom_hybrid_forward()
                and not self._forward_hooks and not self._forward_pre_hooks)

    def _step_fused(self, inputs, states, w):
        x = inputs.reshape((1, inputs.shape[0], -1))
        mode = self._fused_mode()
        c0 = states[1] if mode == 'lstm' else None
        res = ops.rnn_sequence(x, states[0], c0, w['i2h_weight'], w['h2h_weight'],
                               w['i2h_bias'], w['h2h_bias'], w.get('h2r_weight'), mode=mode,
                               return_sequence=False)
        return res[0], list(res)

    def forward(self, inputs, states):
        if not isinstance(states, (list, tuple)):
            states = [states]
        in_size = 1
        for d in inputs.shape[1:]:
            in_size *= d
        w = self._weights(inputs.context, in_size)
        if self._custom_hybrid_forward():
            return HybridBlock.forward(self, inputs, list(states))
        if self._fused_mode() is not None:
            return self._step_fused(inputs, states, w)
        return self._step_composed(inputs, states, w)

    def _step_composed(self, inputs, states, w):
        raise NotImplementedError

    def unroll(self, length, inputs, begin_state=None, layout='NTC', merge_outputs=None,
               valid_length=None):
        if not self._fusable():
            return super().unroll(length, inputs, begin_state, layout, merge_outputs,
                                  valid_length)
        self.reset()
        x, axis, batch_size = _format_sequence(length, inputs, layout, True)
        if x.ndim != 3:
            x = x.reshape(x.shape[:2] + (-1,))
        begin_state = _get_begin_state(self, begin_state, x, batch_size)
        if axis != 0:
            x = ops.swapaxes(x, 0, axis)
        w = self._weights(x.context, x.shape[2])
        mode = self._fused_mode()
        res = ops.rnn_sequence(x, begin_state[0], begin_state[1] if mode == 'lstm' else None,
                               w['i2h_weight'], w['h2h_weight'], w['i2h_bias'],
                               w['h2h_bias'], w.get('h2r_weight'), mode=mode,
                               valid_length=valid_length)
        self._counter += length
        y, states = res[0], list(res[1:])
        if axis != 0:
            y = ops.swapaxes(y, 0, axis)
        merge = merge_outputs if merge_outputs is not None else valid_length is not None
        y, _, _ = _format_sequence(length, y, layout, merge)
        return y, states

    def state_info(self, batch_size=0):
        return [{'shape': (batch_size, self._hidden_size), '__layout__': 'NC'}]

    def __repr__(self):
        shape = self._param('i2h_weight').shape
        return f'{type(self).__name__}({shape[1] or None} -> {shape[0]})'


# ---- RNN / LSTM / GRU cells --------------------------------------------------------------------

class RNNCell(_GatedCell):
    r"""Elman RNN cell: ``h_t = act(W_i x_t + b_i + W_h h_{t-1} + b_h)``.

    Args:
        hidden_size: number of units.
        activation: 'tanh' (default), 'relu', another activation name, or a Block.
        i2h_weight_initializer, h2h_weight_initializer: weight initializers.
        i2h_bias_initializer, h2h_bias_initializer: bias initializers ('zeros').
        input_size: input features; 0 infers them at the first call.

    States: ``[h]`` of shape (batch, hidden_size). Parameters: ``i2h_weight (H, C)``,
    ``h2h_weight (H, H)``, ``i2h_bias``, ``h2h_bias``.
    """

    def __init__(self, hidden_size, activation='tanh', i2h_weight_initializer=None,
                 h2h_weight_initializer=None, i2h_bias_initializer='zeros',
                 h2h_bias_initializer='zeros', input_size=0, prefix=None, params=None):
        _check_activation(activation, 'RNNCell')
        super().__init__(hidden_size, i2h_weight_initializer, h2h_weight_initializer,
                         i2h_bias_initializer, h2h_bias_initializer, input_size, prefix, params)
        self._activation = activation

    def _fused_mode(self):
        if isinstance(self._activation, str) and self._activation in ('tanh', 'relu'):
            return 'rnn_' + self._activation
        return None

    def _alias(self):
        return 'rnn'

    def _step_composed(self, inputs, states, w):
        i2h = ops.fully_connected(inputs, w['i2h_weight'], w['i2h_bias'])
        h2h = ops.fully_connected(states[0], w['h2h_weight'], w['h2h_bias'])
        output = _apply_activation(i2h + h2h, self._activation)
        return output, [output]

    def __repr__(self):
        shape = self._param('i2h_weight').shape
        return f'RNNCell({shape[1] or None} -> {shape[0]}, {self._activation})'


class LSTMCell(_GatedCell):
    r"""Long short-term memory cell (gates i, f, g, o in the rows of the weights)::

        i, f, o = sigmoid(W_i x + b_i + W_h h + b_h) blocks;  g = tanh(...)
        c' = f * c + i * g;   h' = o * tanh(c')

    Args:
        hidden_size: number of units.
        i2h_weight_initializer, h2h_weight_initializer: weight initializers.
        i2h_bias_initializer, h2h_bias_initializer: bias initializers ('zeros').
        input_size: input features; 0 infers them at the first call.
        activation: activation of the candidate and of the cell output ('tanh').
        recurrent_activation: activation of the i, f, o gates ('sigmoid').

    States: ``[h, c]``, each (batch, hidden_size). Parameters: ``i2h_weight (4H, C)``,
    ``h2h_weight (4H, H)``, ``i2h_bias (4H,)``, ``h2h_bias (4H,)``.
    """
    _num_gates = 4

    def __init__(self, hidden_size, i2h_weight_initializer=None, h2h_weight_initializer=None,
                 i2h_bias_initializer='zeros', h2h_bias_initializer='zeros', input_size=0,
                 prefix=None, params=None, activation='tanh', recurrent_activation='sigmoid'):
        _check_activation(activation, 'LSTMCell')
        _check_activation(recurrent_activation, 'LSTMCell')
        super().__init__(hidden_size, i2h_weight_initializer, h2h_weight_initializer,
                         i2h_bias_initializer, h2h_bias_initializer, input_size, prefix, params)
        self._activation = activation
        self._recurrent_activation = recurrent_activation

    def _fused_mode(self):
        if self._activation == 'tanh' and self._recurrent_activation == 'sigmoid':
            return 'lstm'
        return None

    def _alias(self):
        return 'lstm'

    def state_info(self, batch_size=0):
        return [{'shape': (batch_size, self._hidden_size), '__layout__': 'NC'},
                {'shape': (batch_size, self._hidden_size), '__layout__': 'NC'}]

    def _step_composed(self, inputs, states, w):
        i2h = ops.fully_connected(inputs, w['i2h_weight'], w['i2h_bias'])
        h2h = ops.fully_connected(states[0], w['h2h_weight'], w['h2h_bias'])
        gates = ops.split(i2h + h2h, 4, axis=1)
        act, ract = self._activation, self._recurrent_activation
        in_gate = _apply_activation(gates[0], ract)
        forget_gate = _apply_activation(gates[1], ract)
        in_transform = _apply_activation(gates[2], act)
        out_gate = _apply_activation(gates[3], ract)
        next_c = forget_gate * states[1] + in_gate * in_transform
        next_h = out_gate * _apply_activation(next_c, act)
        return next_h, [next_h, next_c]


class GRUCell(_GatedCell):
    r"""Gated recurrent unit cell, cuDNN variant (reset gate applied after the recurrent
    product; gates r, z, n)::

        r, z = sigmoid(W_i x + b_i + W_h h + b_h) blocks
        n = tanh(W_in x + b_in + r * (W_hn h + b_hn));   h' = (1 - z) * n + z * h

    Args:
        hidden_size: number of units.
        i2h_weight_initializer, h2h_weight_initializer: weight initializers.
        i2h_bias_initializer, h2h_bias_initializer: bias initializers ('zeros').
        input_size: input features; 0 infers them at the first call.

    States: ``[h]`` (batch, hidden_size). Parameters: ``i2h_weight (3H, C)``,
    ``h2h_weight (3H, H)``, ``i2h_bias (3H,)``, ``h2h_bias (3H,)``.
    """
    _num_gates = 3
    _mode = 'gru'

    def __init__(self, hidden_size, i2h_weight_initializer=None, h2h_weight_initializer=None,
                 i2h_bias_initializer='zeros', h2h_bias_initializer='zeros', input_size=0,
                 prefix=None, params=None):
        super().__init__(hidden_size, i2h_weight_initializer, h2h_weight_initializer,
                         i2h_bias_initializer, h2h_bias_initializer, input_size, prefix, params)

    def _alias(self):
        return 'gru'
