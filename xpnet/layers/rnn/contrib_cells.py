"""Gluon's contrib recurrent cells: ``LSTMPCell`` (LSTM with a projected recurrent state) and
``VariationalDropoutCell`` (one dropout mask per sequence, the same at every step).

Example::

    cell = rnn.VariationalDropoutCell(rnn.LSTMPCell(256, 64), drop_inputs=0.2,
                                      drop_states=0.2, drop_outputs=0.2)
    cell.initialize()
    with autograd.record():
        out, states = cell.unroll(35, x, layout='TNC', merge_outputs=True)
"""
from ... import nd as _nd
from ... import ops
from ...ndarray import NDArray
from .cells import (_GatedCell, _format_sequence, _get_begin_state,
                    _mask_sequence_variable_length, _positive_int)
from .modifiers import BidirectionalCell, ModifierCell, SequentialRNNCell

__all__ = ['VariationalDropoutCell', 'LSTMPCell']


class VariationalDropoutCell(ModifierCell):
    """Variational dropout (Gal & Ghahramani 2016) on a base cell's inputs, first state and
    outputs: each mask is drawn once per sequence (per batch element and unit) and reused at
    every time step. The three masks are independent. Masks are drawn at the first step after
    ``reset()`` (``unroll`` resets), and only in training mode; outside it the cell is its
    base cell.

    Args:
        base_cell: the cell to wrap.
        drop_inputs: dropout rate of the inputs.
        drop_states: dropout rate of the first state (``h``), applied before each step.
        drop_outputs: dropout rate of the outputs.
    """

    def __init__(self, base_cell, drop_inputs=0., drop_states=0., drop_outputs=0.):
        for name, p in (('drop_inputs', drop_inputs), ('drop_states', drop_states),
                        ('drop_outputs', drop_outputs)):
            if not 0 <= p < 1:
                raise ValueError(f'VariationalDropoutCell: {name} must be in [0, 1), got {p}')
        if drop_states and isinstance(base_cell, BidirectionalCell):
            raise ValueError('VariationalDropoutCell: a BidirectionalCell does not support '
                             'state dropout; wrap the cells underneath instead')
        if drop_states and isinstance(base_cell, SequentialRNNCell) and any(
                isinstance(c, BidirectionalCell) for c in base_cell._children.values()):
            raise ValueError('VariationalDropoutCell: a bidirectional SequentialRNNCell does not '
                             'support state dropout; wrap the cells underneath instead')
        super().__init__(base_cell)
        self.drop_inputs = drop_inputs
        self.drop_states = drop_states
        self.drop_outputs = drop_outputs
        self.drop_inputs_mask = None
        self.drop_states_mask = None
        self.drop_outputs_mask = None

    def _alias(self):
        return 'vardrop'

    def reset(self):
        super().reset()
        self.drop_inputs_mask = None
        self.drop_states_mask = None
        self.drop_outputs_mask = None

    @staticmethod
    def _mask(like, p):
        # Dropout of ones: 0 or 1/(1-p) in training mode, ones otherwise.
        return ops.dropout(_nd.ones_like(like), p)

    def forward(self, inputs, states):
        states = list(states)
        if self.drop_states and self.drop_states_mask is None:
            self.drop_states_mask = self._mask(states[0], self.drop_states)
        if self.drop_inputs and self.drop_inputs_mask is None:
            self.drop_inputs_mask = self._mask(inputs, self.drop_inputs)
        if self.drop_states:
            states[0] = states[0] * self.drop_states_mask
        if self.drop_inputs:
            inputs = inputs * self.drop_inputs_mask
        next_output, next_states = self.base_cell(inputs, states)
        if self.drop_outputs:
            if self.drop_outputs_mask is None:
                self.drop_outputs_mask = self._mask(next_output, self.drop_outputs)
            next_output = next_output * self.drop_outputs_mask
        return next_output, next_states

    def __repr__(self):
        return (f'VariationalDropoutCell(p_in = {self.drop_inputs}, p_out = '
                f'{self.drop_outputs}, p_state = {self.drop_states}, {self.base_cell!r})')

    def unroll(self, length, inputs, begin_state=None, layout='NTC', merge_outputs=None,
               valid_length=None):
        # Without state dropout, the input and output masks apply to the whole sequence at
        # once (shared along the time axis) and the base cell may unroll in one fused op.
        if self.drop_states:
            return super().unroll(length, inputs, begin_state, layout, merge_outputs,
                                  valid_length=valid_length)
        self.reset()
        inputs, axis, batch_size = _format_sequence(length, inputs, layout, True)
        states = _get_begin_state(self, begin_state, inputs, batch_size)
        if self.drop_inputs:
            inputs = ops.dropout(inputs, self.drop_inputs, axes=(axis,))
        self.base_cell._modified = False
        try:
            outputs, states = self.base_cell.unroll(length, inputs, states, layout,
                                                    merge_outputs=True,
                                                    valid_length=valid_length)
        finally:
            self.base_cell._modified = True
        if self.drop_outputs:
            outputs = ops.dropout(outputs, self.drop_outputs, axes=(axis,))
        merge_outputs = isinstance(outputs, NDArray) if merge_outputs is None else \
            merge_outputs
        outputs, _, _ = _format_sequence(length, outputs, layout, merge_outputs)
        if valid_length is not None:
            outputs = _mask_sequence_variable_length(outputs, length, valid_length, axis,
                                                     merge_outputs)
        return outputs, states


class LSTMPCell(_GatedCell):
    r"""LSTM with a projected recurrent state (Sak et al. 2014)::

        i, f, o = sigmoid(W_i x + b_i + W_h r + b_h) blocks;  g = tanh(...)
        c' = f * c + i * g;   h' = o * tanh(c');   r' = W_hr h'

    Args:
        hidden_size: units of the cell state.
        projection_size: units of the projected state ``r`` (the output).
        i2h_weight_initializer, h2h_weight_initializer, h2r_weight_initializer: initializers.
        i2h_bias_initializer, h2h_bias_initializer: bias initializers ('zeros').
        input_size: input features; 0 infers them at the first call.

    States: ``[r, c]`` of shapes (batch, projection_size), (batch, hidden_size). Parameters:
    ``i2h_weight (4H, C)``, ``h2h_weight (4H, P)``, ``h2r_weight (P, H)``, ``i2h_bias``,
    ``h2h_bias (4H,)``.
    """
    _num_gates = 4
    _mode = 'lstm'

    def __init__(self, hidden_size, projection_size, i2h_weight_initializer=None,
                 h2h_weight_initializer=None, h2r_weight_initializer=None,
                 i2h_bias_initializer='zeros', h2h_bias_initializer='zeros', input_size=0,
                 prefix=None, params=None):
        projection_size = _positive_int(projection_size, 'projection_size', 'LSTMPCell')
        super().__init__(hidden_size, i2h_weight_initializer, h2h_weight_initializer,
                         i2h_bias_initializer, h2h_bias_initializer, input_size, prefix, params,
                         projection_size=projection_size,
                         h2r_weight_initializer=h2r_weight_initializer)
        self._projection_size = projection_size

    def _alias(self):
        return 'lstmp'

    def state_info(self, batch_size=0):
        return [{'shape': (batch_size, self._projection_size), '__layout__': 'NC'},
                {'shape': (batch_size, self._hidden_size), '__layout__': 'NC'}]

    def __repr__(self):
        shape = self._param('i2h_weight').shape
        proj = self._param('h2r_weight').shape
        return f'LSTMPCell({shape[1] or None} -> {shape[0]} -> {proj[0]})'
