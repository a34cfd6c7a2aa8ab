"""Convolution layers: Conv1D/2D/3D and Conv1D/2D/3DTranspose (Gluon's ``nn.conv_layers``).

All six share one class, :class:`_Conv`, over the N-d core in ``xpnet.ops.conv``. Weights
have Gluon's shapes: ``(channels, in_channels/groups, *kernel)`` for a convolution and
``(in_channels, channels/groups, *kernel)`` for a transposed one; channels-last layouts
(NWC, NHWC, NDHWC) move the ``in/groups`` (resp. ``channels/groups``) axis last, e.g.
Conv2D NHWC ``(channels, kh, kw, in/groups)``.

Example::

    net = nn.HybridSequential()
    net.add(nn.Conv2D(16, 3, padding=1, activation='relu'),
            nn.Conv2DTranspose(8, 4, strides=2, padding=1))
    net.initialize()
    y = net(nd.ones((2, 3, 32, 32)))          # (2, 8, 64, 64)
"""
import numbers

from .. import ops
from ..ops._base import int_tuple
from ..ops.conv import normalize_layout
from .basic import _activation_block, deferred_shape
from .block import HybridBlock
from .parameter import Parameter

__all__ = ['Conv1D', 'Conv2D', 'Conv3D', 'Conv1DTranspose', 'Conv2DTranspose',
           'Conv3DTranspose']

_DEFAULT_LAYOUT = {1: 'NCW', 2: 'NCHW', 3: 'NCDHW'}


def _ntuple(value, nd, what, layer):
    return int_tuple(value, nd, what, layer)


def check_layout(layout, nd, layer):
    """``channels_last`` for a valid ``nd``-D layout string; ValueError naming ``layer``."""
    valid = [k for k in ('NCW', 'NWC', 'NCHW', 'NHWC', 'NCDHW', 'NDHWC') if len(k) == nd + 2]
    if layout not in valid:
        raise ValueError(f'{layer}: layout must be one of {valid}, got {layout!r}')
    return normalize_layout(layout, nd, layer)[1]


def check_input_rank(x, nd, layout, layer):
    if x.ndim != nd + 2:
        raise ValueError(f'{layer}: expected a {nd + 2}-D input for layout {layout}, got '
                         f'shape {x.shape}')


class _Conv(HybridBlock):
    """The N-d (transposed) convolution layer behind the six public classes.

    Args:
        channels: number of output channels.
        kernel_size: int or tuple of ``nd`` ints.
        strides, padding, dilation: int or tuple of ``nd`` ints.
        groups: split input and output channels into this many groups (``groups ==
            in_channels`` is a depthwise convolution).
        layout: 'NCW'/'NWC', 'NCHW'/'NHWC' or 'NCDHW'/'NDHWC'.
        in_channels: input channels; 0 infers them at the first forward.
        activation: name of an activation applied to the output, or None.
        use_bias: add a learned bias per output channel.
        weight_initializer, bias_initializer: initializers (objects or names).
        output_padding: (transposed only) extra size added on one side of the output.
    """

    _nd = 2
    _transpose = False

    def __init__(self, channels, kernel_size, strides, padding, dilation, groups, layout,
                 in_channels=0, activation=None, use_bias=True, weight_initializer=None,
                 bias_initializer='zeros', output_padding=None, **kwargs):
        super().__init__(**kwargs)
        nd = self._nd
        name = type(self).__name__
        self._channels_last = check_layout(layout, nd, name)
        self._layout = layout
        if not isinstance(channels, numbers.Integral) or channels <= 0:
            raise ValueError(f'{name}: channels must be a positive int, got {channels!r}')
        groups = int(groups)
        if groups < 1:
            raise ValueError(f'{name}: groups must be >= 1, got {groups}')
        self._channels, self._in_channels, self._groups = int(channels), int(in_channels), groups
        self._kernel = _ntuple(kernel_size, nd, 'kernel_size', name)
        self._strides = _ntuple(strides, nd, 'strides', name)
        self._padding = _ntuple(padding, nd, 'padding', name)
        self._dilation = _ntuple(dilation, nd, 'dilation', name)
        for what, vals, low in (('kernel_size', self._kernel, 1), ('strides', self._strides, 1),
                                ('padding', self._padding, 0),
                                ('dilation', self._dilation, 1)):
            if any(v < low for v in vals):
                raise ValueError(f'{name}: every {what} must be >= {low}, got {vals}')
        self._output_padding = None
        if self._transpose:
            self._output_padding = _ntuple(0 if output_padding is None else output_padding,
                                           nd, 'output_padding', name)
        # The channel count split into groups: outputs for a convolution, both for a
        # transposed one (its weight is (in, channels/groups, ...)).
        if self._channels % groups:
            raise ValueError(f'{name}: channels={channels} is not divisible by groups={groups}')
        if in_channels and in_channels % groups:
            raise ValueError(f'{name}: in_channels={in_channels} is not divisible by '
                             f'groups={groups}')
        self.weight = Parameter('weight', shape=self._weight_shape(self._in_channels),
                                init=weight_initializer, allow_deferred_init=True)
        self.bias = Parameter('bias', shape=(self._channels,), init=bias_initializer,
                              allow_deferred_init=True) if use_bias else None
        self.act = _activation_block(activation)

    def _weight_shape(self, in_channels):
        if self._transpose:
            a, b = in_channels, self._channels // self._groups
        else:
            a, b = self._channels, in_channels // self._groups
        if self._channels_last:
            return (a,) + self._kernel + (b,)
        return (a, b) + self._kernel

    def forward(self, x):
        name = type(self).__name__
        check_input_rank(x, self._nd, self._layout, name)
        w = self.weight
        if w._data is None:
            in_ch = x.shape[-1 if self._channels_last else 1]
            if in_ch % self._groups:
                raise ValueError(f'{name}: input has {in_ch} channels (shape {x.shape}), not '
                                 f'divisible by groups={self._groups}')
            deferred_shape(w, self._weight_shape(in_ch))
            if self.bias is not None:
                deferred_shape(self.bias, (self._channels,))
        ctx = x.context
        b = None if self.bias is None else self.bias.data(ctx)
        if self._transpose:
            out = ops.deconvolution(x, w.data(ctx), b, self._strides, self._padding,
                                    self._dilation, self._groups, self._output_padding,
                                    layout=self._layout, name=name)
        else:
            out = ops.convolution(x, w.data(ctx), b, self._strides, self._padding,
                                  self._dilation, self._groups, layout=self._layout, name=name)
        if self.act is not None:
            out = self.act(out)
        return out

    def __repr__(self):
        nd = self._nd
        shape = self.weight.shape
        if self._transpose:
            in_ch = shape[0]
        else:
            in_ch = shape[-1 if self._channels_last else 1] * self._groups
        s = (f'{type(self).__name__}({in_ch or None} -> {self._channels}, '
             f'kernel_size={self._kernel}, stride={self._strides}')
        if self._padding != (0,) * nd:
            s += f', padding={self._padding}'
        if self._dilation != (1,) * nd:
            s += f', dilation={self._dilation}'
        if self._output_padding and self._output_padding != (0,) * nd:
            s += f', output_padding={self._output_padding}'
        if self._groups != 1:
            s += f', groups={self._groups}'
        if self.bias is None:
            s += ', bias=False'
        if self.act is not None:
            s += f', {self.act}'
        return s + ')'


class Conv1D(_Conv):
    """1-D convolution (e.g. over time). Input ``(N, C, W)`` for 'NCW', ``(N, W, C)`` for
    'NWC'; output width ``floor((W + 2p - d(k-1) - 1) / s) + 1``.

    Args: see :class:`_Conv` (``kernel_size``, ``strides``, ``padding``, ``dilation``: int or
    1-tuple).
    """
    _nd = 1

    def __init__(self, channels, kernel_size, strides=1, padding=0, dilation=1, groups=1,
                 layout='NCW', activation=None, use_bias=True, weight_initializer=None,
                 bias_initializer='zeros', in_channels=0, **kwargs):
        super().__init__(channels, kernel_size, strides, padding, dilation, groups, layout,
                         in_channels, activation, use_bias, weight_initializer,
                         bias_initializer, **kwargs)


class Conv2D(_Conv):
    """2-D convolution over images. Input ``(N, C, H, W)`` for 'NCHW' (``(N, H, W, C)`` for
    'NHWC'); each output size is ``floor((x + 2p - d(k-1) - 1) / s) + 1``.

    Args: see :class:`_Conv`.

    Example::

        conv = nn.Conv2D(16, kernel_size=3, padding=1, groups=1, activation='relu')
    """
    _nd = 2

    def __init__(self, channels, kernel_size, strides=(1, 1), padding=(0, 0),
                 dilation=(1, 1), groups=1, layout='NCHW', activation=None, use_bias=True,
                 weight_initializer=None, bias_initializer='zeros', in_channels=0, **kwargs):
        super().__init__(channels, kernel_size, strides, padding, dilation, groups, layout,
                         in_channels, activation, use_bias, weight_initializer,
                         bias_initializer, **kwargs)


class Conv3D(_Conv):
    """3-D convolution over volumes. Input ``(N, C, D, H, W)`` for 'NCDHW' (``(N, D, H, W,
    C)`` for 'NDHWC').

    Args: see :class:`_Conv`.
    """
    _nd = 3

    def __init__(self, channels, kernel_size, strides=(1, 1, 1), padding=(0, 0, 0),
                 dilation=(1, 1, 1), groups=1, layout='NCDHW', activation=None, use_bias=True,
                 weight_initializer=None, bias_initializer='zeros', in_channels=0, **kwargs):
        super().__init__(channels, kernel_size, strides, padding, dilation, groups, layout,
                         in_channels, activation, use_bias, weight_initializer,
                         bias_initializer, **kwargs)


class Conv1DTranspose(_Conv):
    """Transposed 1-D convolution ("deconvolution"). Output width
    ``(W - 1) s - 2p + d(k - 1) + output_padding + 1``; weight ``(in_channels,
    channels/groups, k)``.

    Args: see :class:`_Conv`.
    """
    _nd = 1
    _transpose = True

    def __init__(self, channels, kernel_size, strides=1, padding=0, output_padding=0,
                 dilation=1, groups=1, layout='NCW', activation=None, use_bias=True,
                 weight_initializer=None, bias_initializer='zeros', in_channels=0, **kwargs):
        super().__init__(channels, kernel_size, strides, padding, dilation, groups, layout,
                         in_channels, activation, use_bias, weight_initializer,
                         bias_initializer, output_padding=output_padding, **kwargs)


class Conv2DTranspose(_Conv):
    """Transposed 2-D convolution. Each output size is
    ``(x - 1) s - 2p + d(k - 1) + output_padding + 1``; weight ``(in_channels,
    channels/groups, kh, kw)`` (NHWC: ``(in_channels, kh, kw, channels/groups)``).

    Args: see :class:`_Conv`.

    Example::

        up = nn.Conv2DTranspose(32, kernel_size=4, strides=2, padding=1)   # doubles H, W
    """
    _nd = 2
    _transpose = True

    def __init__(self, channels, kernel_size, strides=(1, 1), padding=(0, 0),
                 output_padding=(0, 0), dilation=(1, 1), groups=1, layout='NCHW',
                 activation=None, use_bias=True, weight_initializer=None,
                 bias_initializer='zeros', in_channels=0, **kwargs):
        super().__init__(channels, kernel_size, strides, padding, dilation, groups, layout,
                         in_channels, activation, use_bias, weight_initializer,
                         bias_initializer, output_padding=output_padding, **kwargs)


class Conv3DTranspose(_Conv):
    """Transposed 3-D convolution; weight ``(in_channels, channels/groups, kd, kh, kw)``.

    Args: see :class:`_Conv`.
    """
    _nd = 3
    _transpose = True

    def __init__(self, channels, kernel_size, strides=(1, 1, 1), padding=(0, 0, 0),
                 output_padding=(0, 0, 0), dilation=(1, 1, 1), groups=1, layout='NCDHW',
                 activation=None, use_bias=True, weight_initializer=None,
                 bias_initializer='zeros', in_channels=0, **kwargs):
        super().__init__(channels, kernel_size, strides, padding, dilation, groups, layout,
                         in_channels, activation, use_bias, weight_initializer,
                         bias_initializer, output_padding=output_padding, **kwargs)
