"""Multi-step recurrent layers ``RNN``, ``LSTM`` and ``GRU`` (Gluon's ``gluon.rnn`` layers).

Each layer and direction is one fused op over the whole sequence
(``xpnet.ops.rnn_sequence``): the input-to-hidden products of all time steps are a single
matrix multiply, and the whole sequence is one autograd node. The numbers are those of
stacking the matching cells (with ``BidirectionalCell`` and ``DropoutCell`` between layers).

Example::

    layer = rnn.LSTM(200, num_layers=2, layout='TNC')
    layer.initialize()
    x = nd.random.uniform(shape=(35, 20, 100))          # (T, N, C)
    out, (h, c) = layer(x, layer.begin_state(batch_size=20))
    out.shape, h.shape                                   # (35, 20, 200), (2, 20, 200)
"""
import numbers

import numpy as np

from ... import nd as _nd
from ... import ops
from ...ndarray import NDArray
from ..basic import deferred_shape
from ..block import HybridBlock
from ..parameter import Parameter

__all__ = ['RNN', 'LSTM', 'GRU']


class _RNNLayer(HybridBlock):
    """Implementation shared by RNN, LSTM and GRU."""

    def __init__(self, hidden_size, num_layers, layout, dropout, bidirectional, input_size,
                 i2h_weight_initializer, h2h_weight_initializer, i2h_bias_initializer,
                 h2h_bias_initializer, mode, projection_size, h2r_weight_initializer,
                 lstm_state_clip_min, lstm_state_clip_max, lstm_state_clip_nan, dtype,
                 use_sequence_length=False, **kwargs):
        super().__init__(**kwargs)
        owner = type(self).__name__
        if layout not in ('TNC', 'NTC'):
            raise ValueError(f"{owner}: invalid layout {layout!r}; must be 'TNC' or 'NTC'")
        for name, v in (('hidden_size', hidden_size), ('num_layers', num_layers)):
            if not isinstance(v, numbers.Integral) or v <= 0:
                raise ValueError(f'{owner}: {name} must be a positive integer, got {v!r}')
        if not isinstance(input_size, numbers.Integral) or input_size < 0:
            raise ValueError(f'{owner}: input_size must be an integer >= 0, got {input_size!r}')
        if not isinstance(dropout, numbers.Number) or not 0 <= dropout < 1:
            raise ValueError(f'{owner}: dropout must be in [0, 1), got {dropout!r}')
        if projection_size is not None and projection_size != 0 and (
                not isinstance(projection_size, numbers.Integral) or projection_size < 0):
            raise ValueError(f'{owner}: projection_size must be a positive integer or None, '
                             f'got {projection_size!r}')
        if (lstm_state_clip_min is None) != (lstm_state_clip_max is None):
            raise ValueError(f'{owner}: state_clip_min and state_clip_max must be given '
                             'together')
        if lstm_state_clip_min is not None and lstm_state_clip_min > lstm_state_clip_max:
            raise ValueError(f'{owner}: state_clip_min {lstm_state_clip_min} exceeds '
                             f'state_clip_max {lstm_state_clip_max}')
        self._hidden_size = int(hidden_size)
        self._projection_size = int(projection_size) if projection_size else None
        self._num_layers = int(num_layers)
        self._mode = mode
        self._layout = layout
        self._dropout = dropout
        self._dir = 2 if bidirectional else 1
        self._input_size = int(input_size)
        self._lstm_state_clip_min = lstm_state_clip_min
        self._lstm_state_clip_max = lstm_state_clip_max
        self._lstm_state_clip_nan = lstm_state_clip_nan
        self._dtype = np.dtype(dtype)
        self._use_sequence_length = use_sequence_length
        self._gates = ops.rnn_gates(mode)
        self.skip_states = None

        ng, ni, nh = self._gates, self._input_size, self._hidden_size
        npj = self._projection_size
        for i in range(self._num_layers):
            for j in ['l', 'r'][:self._dir]:
                self._add_param(f'{j}{i}_i2h_weight', (ng * nh, ni), i2h_weight_initializer)
                self._add_param(f'{j}{i}_h2h_weight', (ng * nh, npj or nh),
                                h2h_weight_initializer)
                self._add_param(f'{j}{i}_i2h_bias', (ng * nh,), i2h_bias_initializer)
                self._add_param(f'{j}{i}_h2h_bias', (ng * nh,), h2h_bias_initializer)
                if npj:
                    self._add_param(f'{j}{i}_h2r_weight', (npj, nh), h2r_weight_initializer)
            ni = (npj or nh) * self._dir

    def _add_param(self, name, shape, init):
        setattr(self, name, Parameter(name, shape=shape, init=init, allow_deferred_init=True,
                                      dtype=self._dtype))

    def __repr__(self):
        shape = self._reg_params['l0_i2h_weight'].shape
        s = f'{type(self).__name__}({shape[1] or None} -> {shape[0] // self._gates}, ' \
            f'{self._layout}'
        if self._num_layers != 1:
            s += f', num_layers={self._num_layers}'
        if self._dropout != 0:
            s += f', dropout={self._dropout}'
        if self._dir == 2:
            s += ', bidirectional'
        return s + ')'

    def state_info(self, batch_size=0):
        raise NotImplementedError

    def _on_cast(self, dtype):
        self._dtype = np.dtype(dtype)

    def begin_state(self, batch_size=0, func=_nd.zeros, **kwargs):
        """Initial states: ``func(shape=..., dtype=..., **kwargs)`` for each (zeros by default),
        each of shape ``(num_layers * directions, batch_size, size)``."""
        func = _nd.zeros if func is None else func
        states = []
        for info in self.state_info(batch_size):
            args = dict(info)
            args.pop('__layout__', None)
            args.update(kwargs)
            states.append(func(**args))
        return states

    def __call__(self, inputs, states=None, sequence_length=None, **kwargs):
        return super().__call__(inputs, states, sequence_length, **kwargs)

    def forward(self, inputs, states=None, sequence_length=None):
        owner = type(self).__name__
        if not isinstance(inputs, NDArray) or inputs.ndim != 3:
            raise ValueError(f'{owner}: expected a 3-D input in layout {self._layout}, got '
                             f'{getattr(inputs, "shape", type(inputs).__name__)}')
        self.skip_states = states is None
        batch_size = inputs.shape[self._layout.find('N')]
        if states is None:
            dt = inputs.dtype if inputs.dtype.kind == 'f' else self._dtype
            states = self.begin_state(batch_size, ctx=inputs.context, dtype=dt)
        if isinstance(states, NDArray):
            states = [states]
        states = list(states)
        infos = self.state_info(batch_size)
        if len(states) != len(infos):
            raise ValueError(f'{owner}: expected {len(infos)} state arrays, got {len(states)}')
        for state, info in zip(states, infos):
            if state.shape != info['shape']:
                raise ValueError(f'{owner}: invalid recurrent state shape. Expecting '
                                 f'{info["shape"]}, got {state.shape}.')
        if self._use_sequence_length:
            if sequence_length is None:
                raise ValueError(f'{owner}: use_sequence_length=True needs the '
                                 'sequence_length argument')
        else:
            sequence_length = None
        out, out_states = self._forward_kernel(inputs, states, sequence_length)
        return out if self.skip_states else (out, out_states)

    def _forward_kernel(self, inputs, states, sequence_length):
        x = ops.swapaxes(inputs, 0, 1) if self._layout == 'NTC' else inputs
        nl, nd_ = self._num_layers, self._dir
        ng, nh = self._gates, self._hidden_size
        params = self._reg_params
        first = params['l0_i2h_weight']
        if first._data is None:
            for j in ['l', 'r'][:nd_]:
                deferred_shape(params[f'{j}0_i2h_weight'], (ng * nh, x.shape[2]))
        elif first.shape[1] != x.shape[2]:
            raise ValueError(f'{type(self).__name__}: input has {x.shape[2]} features (shape '
                             f'{inputs.shape}, layout {self._layout}) but the layer expects '
                             f'{first.shape[1]}')
        ctx = x.context
        is_lstm = self._mode == 'lstm'
        clip = None
        if is_lstm and self._lstm_state_clip_min is not None:
            clip = (float(self._lstm_state_clip_min), float(self._lstm_state_clip_max),
                    bool(self._lstm_state_clip_nan))
        h_all = states[0]
        c_all = states[1] if is_lstm else None
        hs, cs = [], []
        for i in range(nl):
            outs = []
            for d, j in enumerate(['l', 'r'][:nd_]):
                k = i * nd_ + d
                w = {name: params[f'{j}{i}_{name}'].data(ctx)
                     for name in ('i2h_weight', 'h2h_weight', 'i2h_bias', 'h2h_bias')}
                wr = params[f'{j}{i}_h2r_weight'].data(ctx) if self._projection_size else None
                res = ops.rnn_sequence(
                    x, h_all[k], c_all[k] if is_lstm else None, w['i2h_weight'],
                    w['h2h_weight'], w['i2h_bias'], w['h2h_bias'], wr, mode=self._mode,
                    valid_length=sequence_length, reverse=d == 1, state_clip=clip)
                outs.append(res[0])
                hs.append(res[1])
                if is_lstm:
                    cs.append(res[2])
            x = outs[0] if nd_ == 1 else ops.concat(*outs, dim=2)
            if self._dropout and i < nl - 1:
                x = ops.dropout(x, self._dropout)
        out = ops.swapaxes(x, 0, 1) if self._layout == 'NTC' else x
        out_states = [ops.stack(*hs, axis=0)]
        if is_lstm:
            out_states.append(ops.stack(*cs, axis=0))
        return out, out_states


class RNN(_RNNLayer):
    r"""Multi-layer Elman RNN: ``h_t = act(W_i x_t + b_i + W_h h_{t-1} + b_h)`` per layer.

    Args:
        hidden_size: features of the hidden state.
        num_layers: number of stacked layers.
        activation: 'relu' (default) or 'tanh'.
        layout: 'TNC' (default) or 'NTC'.
        dropout: dropout rate on the outputs of every layer but the last (training only).
        bidirectional: add a backward-in-time direction (outputs concatenated).
        i2h_weight_initializer, h2h_weight_initializer, i2h_bias_initializer,
        h2h_bias_initializer: initializers.
        input_size: input features; 0 infers them at the first call.
        dtype: parameter and default state dtype.
        use_sequence_length: if True, the call takes ``sequence_length`` (N,) and treats
            steps at and beyond each length as padding (zero output, state unchanged).

    Call: ``layer(inputs, states=None, sequence_length=None)``; states is one array of shape
    ``(num_layers * directions, batch, hidden_size)``. Without states only the output is
    returned. Parameters: ``l{k}_i2h_weight``, ``l{k}_h2h_weight``, ``l{k}_i2h_bias``,
    ``l{k}_h2h_bias`` and ``r{k}_...`` for the reverse direction.
    """

    def __init__(self, hidden_size, num_layers=1, activation='relu', layout='TNC', dropout=0,
                 bidirectional=False, i2h_weight_initializer=None, h2h_weight_initializer=None,
                 i2h_bias_initializer='zeros', h2h_bias_initializer='zeros', input_size=0,
                 dtype='float32', **kwargs):
        if activation not in ('relu', 'tanh'):
            raise ValueError(f"RNN: activation must be 'relu' or 'tanh', got {activation!r}")
        super().__init__(hidden_size, num_layers, layout, dropout, bidirectional, input_size,
                         i2h_weight_initializer, h2h_weight_initializer,
                         i2h_bias_initializer, h2h_bias_initializer, 'rnn_' + activation,
                         None, None, None, None, False, dtype, **kwargs)

    def state_info(self, batch_size=0):
        return [{'shape': (self._num_layers * self._dir, batch_size, self._hidden_size),
                 '__layout__': 'LNC', 'dtype': self._dtype}]


class LSTM(_RNNLayer):
    r"""Multi-layer LSTM (gates i, f, g, o; ``c' = f*c + i*g``, ``h' = o*tanh(c')``), with an
    optional projection of the recurrent state (LSTMP, ``r = W_hr h``).

    Args:
        hidden_size: features of the hidden (cell) state.
        num_layers: number of stacked layers.
        layout: 'TNC' (default) or 'NTC'.
        dropout: dropout rate on the outputs of every layer but the last (training only).
        bidirectional: add a backward-in-time direction (outputs concatenated).
        input_size: input features; 0 infers them at the first call.
        i2h_weight_initializer, h2h_weight_initializer, i2h_bias_initializer,
        h2h_bias_initializer: initializers.
        projection_size: size of the projected state (None: no projection).
        h2r_weight_initializer: initializer of the projection weights.
        state_clip_min, state_clip_max: clip the cell state to this range after each step
            (both or neither); the gradient is zero where clipping is active.
        state_clip_nan: with clipping, a NaN cell state becomes ``state_clip_min``.
        dtype: parameter and default state dtype.
        use_sequence_length: see :class:`RNN`.

    States ``[h, c]``: h is ``(num_layers * directions, batch, projection_size or
    hidden_size)``, c is ``(num_layers * directions, batch, hidden_size)``.
    """

    def __init__(self, hidden_size, num_layers=1, layout='TNC', dropout=0, bidirectional=False,
                 input_size=0, i2h_weight_initializer=None, h2h_weight_initializer=None,
                 i2h_bias_initializer='zeros', h2h_bias_initializer='zeros',
                 projection_size=None, h2r_weight_initializer=None, state_clip_min=None,
                 state_clip_max=None, state_clip_nan=False, dtype='float32', **kwargs):
        super().__init__(hidden_size, num_layers, layout, dropout, bidirectional, input_size,
                         i2h_weight_initializer, h2h_weight_initializer,
                         i2h_bias_initializer, h2h_bias_initializer, 'lstm', projection_size,
                         h2r_weight_initializer, state_clip_min, state_clip_max, state_clip_nan,
                         dtype, **kwargs)

    def state_info(self, batch_size=0):
        n = self._num_layers * self._dir
        return [{'shape': (n, batch_size, self._projection_size or self._hidden_size),
                 '__layout__': 'LNC', 'dtype': self._dtype},
                {'shape': (n, batch_size, self._hidden_size), '__layout__': 'LNC',
                 'dtype': self._dtype}]


class GRU(_RNNLayer):
    r"""Multi-layer GRU, cuDNN variant (gates r, z, n;
    ``n = tanh(W_in x + b_in + r * (W_hn h + b_hn))``, ``h' = (1 - z) * n + z * h``).

    Args: as :class:`RNN` without ``activation``. States: one array
    ``(num_layers * directions, batch, hidden_size)``.
    """

    def __init__(self, hidden_size, num_layers=1, layout='TNC', dropout=0, bidirectional=False,
                 input_size=0, i2h_weight_initializer=None, h2h_weight_initializer=None,
                 i2h_bias_initializer='zeros', h2h_bias_initializer='zeros', dtype='float32',
                 **kwargs):
        super().__init__(hidden_size, num_layers, layout, dropout, bidirectional, input_size,
                         i2h_weight_initializer, h2h_weight_initializer,
                         i2h_bias_initializer, h2h_bias_initializer, 'gru', None, None, None,
                         None, False, dtype, **kwargs)

    def state_info(self, batch_size=0):
        return [{'shape': (self._num_layers * self._dir, batch_size, self._hidden_size),
                 '__layout__': 'LNC', 'dtype': self._dtype}]
