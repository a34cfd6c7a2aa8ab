"""Convolutional recurrent cells (Gluon's ``contrib.rnn`` conv cells): RNN, LSTM and GRU cells
whose input-to-state and state-to-state transforms are convolutions, in 1-D, 2-D and 3-D and
in channels-first or channels-last layout.

The i2h convolution uses ``i2h_pad`` / ``i2h_dilate`` with stride 1; the h2h convolution is
"same" (``pad = dilate * (k - 1) // 2``, odd kernels only) so the state keeps the i2h
output's spatial size. Gates are split along the channel axis in Gluon's orders (i, f, c, o
for LSTM; r, z, o for GRU). ``unroll`` computes the i2h convolution of all time steps in one
call.

Example::

    cell = rnn.Conv2DLSTMCell(input_shape=(8, 16, 16), hidden_channels=16,
                              i2h_kernel=3, h2h_kernel=3, i2h_pad=1)
    cell.initialize()
    out, states = cell.unroll(10, x, layout='NTC', merge_outputs=True)   # x (N, 10, 8, 16, 16)
"""
import numbers

from ... import ops
from ...ops._base import int_tuple
from ..basic import deferred_shape
from ..block import HybridBlock
from ..parameter import Parameter
from .cells import (HybridRecurrentCell, _apply_activation, _check_activation,
                    _finish_unroll, _format_sequence, _get_begin_state)

__all__ = ['Conv1DRNNCell', 'Conv2DRNNCell', 'Conv3DRNNCell',
           'Conv1DLSTMCell', 'Conv2DLSTMCell', 'Conv3DLSTMCell',
           'Conv1DGRUCell', 'Conv2DGRUCell', 'Conv3DGRUCell']

_LAYOUTS = {1: ('NCW', 'NWC'), 2: ('NCHW', 'NHWC'), 3: ('NCDHW', 'NDHWC')}


def _spec(value, dims, name, owner, minimum):
    return int_tuple(value, dims, name, owner, minimum)


class _BaseConvRNNCell(HybridRecurrentCell):
    """Shared machinery of the convolutional cells (shapes, parameters, convolutions)."""
    _num_gates = 1
    _num_states = 1

    def __init__(self, input_shape, hidden_channels, i2h_kernel, h2h_kernel, i2h_pad,
                 i2h_dilate, h2h_dilate, i2h_weight_initializer, h2h_weight_initializer,
                 i2h_bias_initializer, h2h_bias_initializer, dims, conv_layout, activation,
                 prefix=None, params=None):
        super().__init__(prefix=prefix, params=params)
        owner = type(self).__name__
        if conv_layout not in _LAYOUTS[dims]:
            raise ValueError(f'{owner}: conv_layout must be one of {_LAYOUTS[dims]}, got '
                             f'{conv_layout!r}')
        try:
            input_shape = tuple(int(s) for s in input_shape)
        except TypeError:
            raise ValueError(f'{owner}: input_shape must be a tuple of {dims + 1} ints, got '
                             f'{input_shape!r}') from None
        if len(input_shape) != dims + 1 or any(s < 0 for s in input_shape):
            raise ValueError(f'{owner}: input_shape must hold the channels and {dims} spatial '
                             f'sizes in {conv_layout} order (without batch), got {input_shape}')
        if not isinstance(hidden_channels, numbers.Integral) or hidden_channels <= 0:
            raise ValueError(f'{owner}: hidden_channels must be a positive integer, got '
                             f'{hidden_channels!r}')
        _check_activation(activation, owner)
        self._dims = dims
        self._hidden_channels = int(hidden_channels)
        self._input_shape = input_shape
        self._conv_layout = conv_layout
        self._activation = activation
        self._i2h_kernel = _spec(i2h_kernel, dims, 'i2h_kernel', owner, 1)
        self._h2h_kernel = _spec(h2h_kernel, dims, 'h2h_kernel', owner, 1)
        if any(k % 2 == 0 for k in self._h2h_kernel):
            raise ValueError(f'{owner}: only odd h2h_kernel sizes are supported (the state '
                             f'must keep its size), got h2h_kernel={h2h_kernel!r}')
        self._i2h_pad = _spec(i2h_pad, dims, 'i2h_pad', owner, 0)
        self._i2h_dilate = _spec(i2h_dilate, dims, 'i2h_dilate', owner, 1)
        self._h2h_dilate = _spec(h2h_dilate, dims, 'h2h_dilate', owner, 1)
        self._stride = (1,) * dims
        self._h2h_pad = tuple(d * (k - 1) // 2 for d, k in zip(self._h2h_dilate,
                                                               self._h2h_kernel))
        first = conv_layout.find('C') == 1
        self._channel_axis = 1 if first else dims + 1
        in_channels = input_shape[0] if first else input_shape[-1]
        spatial = input_shape[1:] if first else input_shape[:-1]
        out = tuple(x + 2 * p - d * (k - 1) for x, k, p, d in
                    zip(spatial, self._i2h_kernel, self._i2h_pad, self._i2h_dilate))
        if any(o < 1 for o in out):
            raise ValueError(f'{owner}: i2h_kernel {self._i2h_kernel} (dilation '
                             f'{self._i2h_dilate}, padding {self._i2h_pad}) does not fit the '
                             f'input spatial size {spatial}')
        G = self._num_gates * self._hidden_channels
        if first:
            i2h_shape = (G, in_channels) + self._i2h_kernel
            h2h_shape = (G, self._hidden_channels) + self._h2h_kernel
            self._state_shape = (self._hidden_channels,) + out
        else:
            i2h_shape = (G,) + self._i2h_kernel + (in_channels,)
            h2h_shape = (G,) + self._h2h_kernel + (self._hidden_channels,)
            self._state_shape = out + (self._hidden_channels,)
        self._in_channels = in_channels
        self.i2h_weight = Parameter('i2h_weight', shape=i2h_shape, init=i2h_weight_initializer,
                                    allow_deferred_init=True)
        self.h2h_weight = Parameter('h2h_weight', shape=h2h_shape, init=h2h_weight_initializer,
                                    allow_deferred_init=True)
        self.i2h_bias = Parameter('i2h_bias', shape=(G,), init=i2h_bias_initializer,
                                  allow_deferred_init=True)
        self.h2h_bias = Parameter('h2h_bias', shape=(G,), init=h2h_bias_initializer,
                                  allow_deferred_init=True)

    def state_info(self, batch_size=0):
        return [{'shape': (batch_size,) + self._state_shape, '__layout__': self._conv_layout}
                for _ in range(self._num_states)]

    def __repr__(self):
        shape = self._reg_params['i2h_weight'].shape
        in_channels = shape[1 if self._channel_axis == 1 else -1]
        act = self._activation if isinstance(self._activation, str) else repr(self._activation)
        return (f'{type(self).__name__}({in_channels or None} -> {shape[0]}, {act}, '
                f'{self._conv_layout})')

    # ---- pieces ---------------------------------------------------------------------------
    def _weights(self, ctx, in_channels):
        w = self._reg_params['i2h_weight']
        if w._data is None:
            shape = list(w.shape)
            shape[1 if self._channel_axis == 1 else -1] = in_channels
            deferred_shape(w, tuple(shape))
        return {name: p.data(ctx) for name, p in self._reg_params.items()}

    def _check_step_input(self, x):
        owner = type(self).__name__
        expect = self._input_shape
        got = tuple(x.shape[1:])
        if x.ndim != self._dims + 2 or any(e and e != g for e, g in zip(expect, got)):
            raise ValueError(f'{owner}: each step\'s input must have shape (batch,) + '
                             f'{expect} ({self._conv_layout}), got {x.shape}')

    def _i2h(self, x, w):
        return ops.convolution(x, w['i2h_weight'], w['i2h_bias'], stride=1, pad=self._i2h_pad,
                               dilate=self._i2h_dilate, layout=self._conv_layout,
                               name=f'{type(self).__name__} i2h')

    def _h2h(self, h, w):
        return ops.convolution(h, w['h2h_weight'], w['h2h_bias'], stride=1, pad=self._h2h_pad,
                               dilate=self._h2h_dilate, layout=self._conv_layout,
                               name=f'{type(self).__name__} h2h')

    def _gate_step(self, i2h, h2h, states):
        raise NotImplementedError

    def _custom_hybrid_forward(self):
        return type(self).hybrid_forward is not HybridRecurrentCell.hybrid_forward

    def _channels_of(self, x):
        return x.shape[1] if self._channel_axis == 1 else x.shape[-1]

    def forward(self, inputs, states):
        if not isinstance(states, (list, tuple)):
            states = [states]
        self._check_step_input(inputs)
        w = self._weights(inputs.context, self._channels_of(inputs))
        if self._custom_hybrid_forward():
            return HybridBlock.forward(self, inputs, list(states))
        for s, info in zip(states, self.state_info(inputs.shape[0])):
            if s.shape != info['shape']:
                raise ValueError(f'{type(self).__name__}: state of shape {s.shape}, expected '
                                 f'{info["shape"]}')
        return self._gate_step(self._i2h(inputs, w), self._h2h(states[0], w), list(states))

    def _fusable(self):
        return (type(self).forward is _BaseConvRNNCell.forward
                and not self._custom_hybrid_forward()
                and not self._forward_hooks and not self._forward_pre_hooks)

    def unroll(self, length, inputs, begin_state=None, layout='NTC', merge_outputs=None,
               valid_length=None):
        if not self._fusable():
            return super().unroll(length, inputs, begin_state, layout, merge_outputs,
                                  valid_length)
        # The i2h convolution of every step at once: (T*N, ...) images in one call.
        self.reset()
        x, axis, batch_size = _format_sequence(length, inputs, layout, True)
        states = _get_begin_state(self, begin_state, x, batch_size)
        if axis != 0:
            x = ops.swapaxes(x, 0, axis)
        T, N = x.shape[0], x.shape[1]
        steps_in = x.reshape((T * N,) + x.shape[2:])
        self._check_step_input(steps_in)
        w = self._weights(x.context, self._channels_of(steps_in))
        i2h = self._i2h(steps_in, w)
        i2h = ops.split(i2h.reshape((T, N) + i2h.shape[1:]), T, axis=0, squeeze_axis=True)
        i2h = i2h if isinstance(i2h, list) else [i2h]
        outputs, all_states = [], []
        for t in range(T):
            self._counter += 1
            out, states = self._gate_step(i2h[t], self._h2h(states[0], w), states)
            outputs.append(out)
            if valid_length is not None:
                all_states.append(states)
        return _finish_unroll(outputs, states, all_states, length, valid_length, axis, layout,
                              merge_outputs)


class _ConvRNNCell(_BaseConvRNNCell):
    def _alias(self):
        return 'conv_rnn'

    def _gate_step(self, i2h, h2h, states):
        output = _apply_activation(i2h + h2h, self._activation)
        return output, [output]


class _ConvLSTMCell(_BaseConvRNNCell):
    _num_gates = 4
    _num_states = 2

    def _alias(self):
        return 'conv_lstm'

    def _gate_step(self, i2h, h2h, states):
        if isinstance(self._activation, str) and self._activation == 'tanh':
            h, c = ops.lstm_pointwise(i2h, h2h, states[1], axis=self._channel_axis)
            return h, [h, c]
        gates = ops.split(i2h + h2h, 4, axis=self._channel_axis)
        in_gate = ops.sigmoid(gates[0])
        forget_gate = ops.sigmoid(gates[1])
        in_transform = _apply_activation(gates[2], self._activation)
        out_gate = ops.sigmoid(gates[3])
        next_c = forget_gate * states[1] + in_gate * in_transform
        next_h = out_gate * _apply_activation(next_c, self._activation)
        return next_h, [next_h, next_c]


class _ConvGRUCell(_BaseConvRNNCell):
    _num_gates = 3

    def _alias(self):
        return 'conv_gru'

    def _gate_step(self, i2h, h2h, states):
        if isinstance(self._activation, str) and self._activation == 'tanh':
            h = ops.gru_pointwise(i2h, h2h, states[0], axis=self._channel_axis)
            return h, [h]
        ax = self._channel_axis
        i2h_r, i2h_z, i2h_n = ops.split(i2h, 3, axis=ax)
        h2h_r, h2h_z, h2h_n = ops.split(h2h, 3, axis=ax)
        reset_gate = ops.sigmoid(i2h_r + h2h_r)
        update_gate = ops.sigmoid(i2h_z + h2h_z)
        next_h_tmp = _apply_activation(i2h_n + reset_gate * h2h_n, self._activation)
        next_h = (1. - update_gate) * next_h_tmp + update_gate * states[0]
        return next_h, [next_h]


_DOC = """{dims}-D convolutional {kind} cell.

{formula}
    Args:
        input_shape: one step's input shape without the batch axis, in ``conv_layout``
            order (e.g. {example} for '{first}').
        hidden_channels: channels of the state.
        i2h_kernel: input convolution kernel (int or {dims}-tuple).
        h2h_kernel: recurrent convolution kernel (odd sizes only).
        i2h_pad: input convolution padding (default {zeros}).
        i2h_dilate, h2h_dilate: dilations (default {ones}).
        i2h_weight_initializer, h2h_weight_initializer: weight initializers.
        i2h_bias_initializer, h2h_bias_initializer: bias initializers ('zeros').
        conv_layout: '{first}' (default) or '{last}'; weights use Gluon's layout for it.
        activation: activation name or a Block such as ``nn.LeakyReLU(0.1)`` ('tanh').

    States: {states}, each ``(batch, hidden_channels, *out)`` ('{first}') or
    ``(batch, *out, hidden_channels)`` ('{last}'), ``out`` being the i2h output size.
"""
_FORMULAS = {
    'RNN': '    ``h_t = act(W_i * x_t + R_i * h_{t-1} + b_i + b_h)``\n',
    'LSTM': ('    ``i, f, o = sigmoid(W * x_t + R * h_{t-1} + b)`` blocks, '
             '``c\'_t = act(...)``,\n    ``c_t = f c_{t-1} + i c\'_t``, '
             '``h_t = o act(c_t)``\n'),
    'GRU': ('    ``r, z = sigmoid(W * x_t + R * h_{t-1} + b)`` blocks,\n'
            '    ``n = act(W_n * x_t + b_n + r (R_n * h_{t-1} + b_hn))``, '
            '``h_t = (1 - z) n + z h_{t-1}``\n'),
}
_EXAMPLES = {1: '(C, W)', 2: '(C, H, W)', 3: '(C, D, H, W)'}


def _make(kind, dims, base):
    first, last = _LAYOUTS[dims]

    def __init__(self, input_shape, hidden_channels, i2h_kernel, h2h_kernel,
                 i2h_pad=(0,) * dims, i2h_dilate=(1,) * dims, h2h_dilate=(1,) * dims,
                 i2h_weight_initializer=None, h2h_weight_initializer=None,
                 i2h_bias_initializer='zeros', h2h_bias_initializer='zeros',
                 conv_layout=first, activation='tanh', prefix=None, params=None):
        base.__init__(self, input_shape=input_shape, hidden_channels=hidden_channels,
                      i2h_kernel=i2h_kernel, h2h_kernel=h2h_kernel, i2h_pad=i2h_pad,
                      i2h_dilate=i2h_dilate, h2h_dilate=h2h_dilate,
                      i2h_weight_initializer=i2h_weight_initializer,
                      h2h_weight_initializer=h2h_weight_initializer,
                      i2h_bias_initializer=i2h_bias_initializer,
                      h2h_bias_initializer=h2h_bias_initializer, dims=dims,
                      conv_layout=conv_layout, activation=activation, prefix=prefix,
                      params=params)

    name = f'Conv{dims}D{kind}Cell'
    doc = _DOC.format(dims=dims, kind=kind, formula=_FORMULAS[kind], example=_EXAMPLES[dims],
                      first=first, last=last, zeros=(0,) * dims, ones=(1,) * dims,
                      states='``[h, c]``' if kind == 'LSTM' else '``[h]``')
    return type(name, (base,), {'__init__': __init__, '__doc__': doc,
                                '__module__': __name__, '__qualname__': name})


Conv1DRNNCell = _make('RNN', 1, _ConvRNNCell)
Conv2DRNNCell = _make('RNN', 2, _ConvRNNCell)
Conv3DRNNCell = _make('RNN', 3, _ConvRNNCell)
Conv1DLSTMCell = _make('LSTM', 1, _ConvLSTMCell)
Conv2DLSTMCell = _make('LSTM', 2, _ConvLSTMCell)
Conv3DLSTMCell = _make('LSTM', 3, _ConvLSTMCell)
Conv1DGRUCell = _make('GRU', 1, _ConvGRUCell)
Conv2DGRUCell = _make('GRU', 2, _ConvGRUCell)
Conv3DGRUCell = _make('GRU', 3, _ConvGRUCell)
