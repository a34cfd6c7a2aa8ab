"""Cell containers and modifiers (Gluon's ``gluon.rnn``): SequentialRNNCell stacks cells,
BidirectionalCell runs two cells in opposite directions, DropoutCell drops its input, and the
ModifierCells (ZoneoutCell, ResidualCell; VariationalDropoutCell in ``contrib_cells``) wrap a
base cell, which must not be called directly afterwards.

Example::

    stack = rnn.SequentialRNNCell()
    stack.add(rnn.LSTMCell(64))
    stack.add(rnn.DropoutCell(0.2))
    stack.add(rnn.ResidualCell(rnn.LSTMCell(64)))
    outputs, states = stack.unroll(35, x, layout='NTC', merge_outputs=True)
"""
import numbers

from ... import nd as _nd
from ... import ops
from ...ndarray import NDArray
from .cells import (HybridRecurrentCell, RecurrentCell, _cells_begin_state, _cells_state_info,
                    _format_sequence, _get_begin_state, _mask_sequence_variable_length,
                    _reverse_sequences)

__all__ = ['SequentialRNNCell', 'HybridSequentialRNNCell', 'DropoutCell', 'ModifierCell',
           'ZoneoutCell', 'ResidualCell', 'BidirectionalCell']


class SequentialRNNCell(RecurrentCell):
    """Stacks cells: the output of each is the input of the next; states are concatenated.

    Example::

        stack = rnn.SequentialRNNCell()
        stack.add(rnn.LSTMCell(64))
        stack.add(rnn.LSTMCell(64))
    """

    def __init__(self, prefix=None, params=None):
        super().__init__(prefix=prefix, params=params)

    def __repr__(self):
        body = '\n'.join(f'({i}): ' + repr(m).replace('\n', '\n  ')
                         for i, m in self._children.items())
        return f'{type(self).__name__}(\n{body}\n)'

    def add(self, cell):
        """Append a cell to the stack."""
        if not isinstance(cell, RecurrentCell):
            raise TypeError(f'{type(self).__name__}.add: expected a recurrent cell, got '
                            f'{type(cell).__name__}')
        self.register_child(cell)
        return self

    def state_info(self, batch_size=0):
        return _cells_state_info(self._children.values(), batch_size)

    def begin_state(self, batch_size=0, func=_nd.zeros, **kwargs):
        self._check_unmodified()
        return _cells_begin_state(self._children.values(), batch_size=batch_size, func=func,
                                  **kwargs)

    def __call__(self, inputs, states):
        self._counter += 1
        next_states = []
        p = 0
        for cell in self._children.values():
            if isinstance(cell, BidirectionalCell):
                raise ValueError(f'{type(self).__name__} containing a BidirectionalCell cannot '
                                 'be stepped; use unroll()')
            n = len(cell.state_info())
            state = list(states[p:p + n])
            p += n
            inputs, state = cell(inputs, state)
            next_states.append(state)
        return inputs, sum(next_states, [])

    def forward(self, inputs, states):
        return self.__call__(inputs, states)

    def unroll(self, length, inputs, begin_state=None, layout='NTC', merge_outputs=None,
               valid_length=None):
        self.reset()
        inputs, _, batch_size = _format_sequence(length, inputs, layout, None)
        num_cells = len(self._children)
        begin_state = _get_begin_state(self, begin_state, inputs, batch_size)
        p = 0
        next_states = []
        for i, cell in enumerate(self._children.values()):
            n = len(cell.state_info())
            states = begin_state[p:p + n]
            p += n
            inputs, states = cell.unroll(length, inputs=inputs, begin_state=states,
                                         layout=layout,
                                         merge_outputs=None if i < num_cells - 1
                                         else merge_outputs,
                                         valid_length=valid_length)
            next_states.extend(states)
        return inputs, next_states

    def __getitem__(self, i):
        return self._children[str(i)]

    def __len__(self):
        return len(self._children)


class HybridSequentialRNNCell(SequentialRNNCell, HybridRecurrentCell):
    """SequentialRNNCell for hybrid cells (identical in xpnet)."""

    forward = SequentialRNNCell.forward


class DropoutCell(HybridRecurrentCell):
    """Applies dropout to its input (no states). ``axes`` share one mask value along them.

    Args:
        rate: fraction of elements dropped.
        axes: axes along which the mask is shared.
    """

    def __init__(self, rate, axes=(), prefix=None, params=None):
        super().__init__(prefix=prefix, params=params)
        if not isinstance(rate, numbers.Number) or not 0 <= rate <= 1:
            raise ValueError(f'DropoutCell: rate must be a number in [0, 1], got {rate!r}')
        self._rate = rate
        self._axes = tuple(axes)

    def __repr__(self):
        return f'DropoutCell(rate={self._rate}, axes={self._axes})'

    def state_info(self, batch_size=0):
        return []

    def _alias(self):
        return 'dropout'

    def forward(self, inputs, states):
        if self._rate > 0:
            inputs = ops.dropout(inputs, self._rate, self._axes)
        return inputs, states

    def unroll(self, length, inputs, begin_state=None, layout='NTC', merge_outputs=None,
               valid_length=None):
        self.reset()
        inputs, _, _ = _format_sequence(length, inputs, layout, merge_outputs)
        if isinstance(inputs, NDArray):
            return self.forward(inputs, list(begin_state) if begin_state else [])
        return super().unroll(length, inputs, begin_state=begin_state, layout=layout,
                              merge_outputs=merge_outputs, valid_length=None)


class ModifierCell(HybridRecurrentCell):
    """Base class of cells that wrap another cell (``base_cell``) and modify it. Once
    wrapped, the base cell must not be called directly."""

    def __init__(self, base_cell):
        if not isinstance(base_cell, RecurrentCell):
            raise TypeError(f'{type(self).__name__}: base_cell must be a recurrent cell, got '
                            f'{type(base_cell).__name__}')
        if base_cell._modified:
            raise ValueError(f'cell {base_cell.name} is already modified; one cell cannot be '
                             'modified twice')
        base_cell._modified = True
        super().__init__(prefix=base_cell.prefix + self._alias(), params=None)
        self.base_cell = base_cell

    def _alias(self):
        return 'modifier'

    @property
    def params(self):
        return self.base_cell.params

    def state_info(self, batch_size=0):
        return self.base_cell.state_info(batch_size)

    def begin_state(self, batch_size=0, func=_nd.zeros, **kwargs):
        self._check_unmodified()
        self.base_cell._modified = False
        try:
            begin = self.base_cell.begin_state(batch_size=batch_size, func=func, **kwargs)
        finally:
            self.base_cell._modified = True
        return begin

    def forward(self, inputs, states):
        raise NotImplementedError

    def __repr__(self):
        return f'{type(self).__name__}({self.base_cell!r})'


class ZoneoutCell(ModifierCell):
    """Zoneout (Krueger et al. 2016): each output / state unit keeps its previous value with
    probability ``zoneout_outputs`` / ``zoneout_states`` at every step (training mode only).

    Args:
        base_cell: the cell to modify.
        zoneout_outputs: probability of keeping the previous output.
        zoneout_states: probability of keeping the previous state.
    """

    def __init__(self, base_cell, zoneout_outputs=0., zoneout_states=0.):
        if isinstance(base_cell, BidirectionalCell):
            raise ValueError('ZoneoutCell: a BidirectionalCell cannot be stepped; apply '
                             'ZoneoutCell to the cells underneath instead')
        for name, p in (('zoneout_outputs', zoneout_outputs),
                        ('zoneout_states', zoneout_states)):
            if not 0 <= p <= 1:
                raise ValueError(f'ZoneoutCell: {name} must be in [0, 1], got {p}')
        super().__init__(base_cell)
        self.zoneout_outputs = zoneout_outputs
        self.zoneout_states = zoneout_states
        self._prev_output = None

    def __repr__(self):
        return (f'ZoneoutCell(p_out={self.zoneout_outputs}, p_state={self.zoneout_states}, '
                f'{self.base_cell!r})')

    def _alias(self):
        return 'zoneout'

    def reset(self):
        super().reset()
        self._prev_output = None

    def forward(self, inputs, states):
        cell, p_outputs, p_states = self.base_cell, self.zoneout_outputs, self.zoneout_states
        next_output, next_states = cell(inputs, states)

        def keep_new(p, like):
            return ops.dropout(_nd.ones_like(like), p)

        prev_output = self._prev_output
        if prev_output is None:
            prev_output = _nd.zeros_like(next_output)
        output = ops.where(keep_new(p_outputs, next_output), next_output, prev_output) \
            if p_outputs != 0. else next_output
        states = [ops.where(keep_new(p_states, new_s), new_s, old_s)
                  for new_s, old_s in zip(next_states, states)] if p_states != 0. \
            else next_states
        self._prev_output = output
        return output, states


class ResidualCell(ModifierCell):
    """Adds the input to the output of ``base_cell`` (Wu et al. 2016). The input and
    output sizes must be equal."""

    def __init__(self, base_cell):
        super().__init__(base_cell)

    def _alias(self):
        return 'residual'

    def forward(self, inputs, states):
        output, states = self.base_cell(inputs, states)
        if output.shape != inputs.shape:
            raise ValueError(f'ResidualCell: the base cell output {output.shape} and the input '
                             f'{inputs.shape} must have the same shape')
        return output + inputs, states

    def unroll(self, length, inputs, begin_state=None, layout='NTC', merge_outputs=None,
               valid_length=None):
        self.reset()
        self.base_cell._modified = False
        try:
            outputs, states = self.base_cell.unroll(length, inputs=inputs,
                                                    begin_state=begin_state, layout=layout,
                                                    merge_outputs=merge_outputs,
                                                    valid_length=valid_length)
        finally:
            self.base_cell._modified = True
        merge_outputs = isinstance(outputs, NDArray) if merge_outputs is None else merge_outputs
        inputs, axis, _ = _format_sequence(length, inputs, layout, merge_outputs)
        if valid_length is not None:
            inputs = _mask_sequence_variable_length(inputs, length, valid_length, axis,
                                                    merge_outputs)
        if merge_outputs:
            outputs = outputs + inputs
        else:
            outputs = [o + i for o, i in zip(outputs, inputs)]
        return outputs, states


class BidirectionalCell(HybridRecurrentCell):
    """Runs ``l_cell`` forward and ``r_cell`` backward in time and concatenates their outputs
    along the feature axis. It can only be unrolled, not stepped.

    Args:
        l_cell: cell for the forward direction.
        r_cell: cell for the backward direction.
        output_prefix: accepted for Gluon compatibility.
    """

    def __init__(self, l_cell, r_cell, output_prefix='bi_'):
        super().__init__(prefix='', params=None)
        for name, c in (('l_cell', l_cell), ('r_cell', r_cell)):
            if not isinstance(c, RecurrentCell):
                raise TypeError(f'BidirectionalCell: {name} must be a recurrent cell, got '
                                f'{type(c).__name__}')
        self.l_cell = l_cell
        self.r_cell = r_cell
        self._output_prefix = output_prefix

    def __call__(self, inputs, states):
        raise NotImplementedError('BidirectionalCell cannot be stepped; use unroll()')

    def __repr__(self):
        return f'BidirectionalCell(forward={self.l_cell!r}, backward={self.r_cell!r})'

    def state_info(self, batch_size=0):
        return _cells_state_info([self.l_cell, self.r_cell], batch_size)

    def begin_state(self, batch_size=0, func=_nd.zeros, **kwargs):
        self._check_unmodified()
        return _cells_begin_state([self.l_cell, self.r_cell], batch_size=batch_size,
                                  func=func, **kwargs)

    def unroll(self, length, inputs, begin_state=None, layout='NTC', merge_outputs=None,
               valid_length=None):
        self.reset()
        inputs, axis, batch_size = _format_sequence(length, inputs, layout, False)
        reversed_inputs = _reverse_sequences(inputs, length, valid_length)
        begin_state = _get_begin_state(self, begin_state, inputs, batch_size)
        l_cell, r_cell = self.l_cell, self.r_cell
        n_l = len(l_cell.state_info(batch_size))
        l_outputs, l_states = l_cell.unroll(length, inputs=inputs,
                                            begin_state=begin_state[:n_l], layout=layout,
                                            merge_outputs=merge_outputs,
                                            valid_length=valid_length)
        r_outputs, r_states = r_cell.unroll(length, inputs=reversed_inputs,
                                            begin_state=begin_state[n_l:], layout=layout,
                                            merge_outputs=False, valid_length=valid_length)
        reversed_r_outputs = _reverse_sequences(r_outputs, length, valid_length)
        if merge_outputs is None:
            merge_outputs = isinstance(l_outputs, NDArray)
            l_outputs, _, _ = _format_sequence(None, l_outputs, layout, merge_outputs)
            reversed_r_outputs, _, _ = _format_sequence(None, reversed_r_outputs, layout,
                                                        merge_outputs)
        if merge_outputs:
            if not isinstance(reversed_r_outputs, NDArray):
                reversed_r_outputs = ops.stack(*reversed_r_outputs, axis=axis)
            outputs = ops.concat(l_outputs, reversed_r_outputs, dim=2)
        else:
            outputs = [ops.concat(lo, ro, dim=1)
                       for lo, ro in zip(l_outputs, reversed_r_outputs)]
        if valid_length is not None:
            outputs = _mask_sequence_variable_length(outputs, length, valid_length, axis,
                                                     merge_outputs)
        return outputs, l_states + r_states
