"""Deformable convolution layers: DeformableConvolution (v1) and
ModulatedDeformableConvolution (v2), each with its offset convolution.

The offsets come from an ordinary convolution of the input with the layer's kernel, stride,
padding, dilation and groups (``offset_weight``, ``offset_bias``), producing ``2*K*dg``
channels for v1 and ``3*K*dg`` for v2 (K = kh*kw, dg = ``num_deformable_group``); v2 uses
the first ``2*K*dg`` as offsets and ``2 * sigmoid`` of the rest as the mask (a zero
initialization gives offsets 0 and mask 1: an ordinary convolution). The sampling rules are
in ``xpnet/ops/deformable.py``.

Weights: ``deformable_conv_weight`` ``(channels, in_channels/groups, kh, kw)`` and
``offset_weight`` ``(2*K*dg (v1) or 3*K*dg (v2), in_channels/groups, kh, kw)``; with
``layout='NHWC'`` the ``in_channels/groups`` axis is last, as for Conv2D. (MXNet runs these
layers only in NCHW.)

Example::

    layer = nn.DeformableConvolution(16, kernel_size=3, padding=1)
    layer.initialize()
    y = layer(nd.ones((2, 8, 10, 10)))        # (2, 16, 10, 10)
"""
import numbers

from .. import ops
from .basic import _activation_block, deferred_shape
from .block import HybridBlock
from .conv import check_input_rank, check_layout
from .parameter import Parameter

__all__ = ['DeformableConvolution', 'ModulatedDeformableConvolution']


def _pair(value, what, layer, low):
    if isinstance(value, numbers.Integral):
        out = (int(value),) * 2
    else:
        out = tuple(int(v) for v in value)
    if len(out) != 2 or any(v < low for v in out):
        raise ValueError(f'{layer}: {what} must be an int or a tuple/list of 2 ints >= {low}, '
                         f'got {value!r}')
    return out


class _Deformable(HybridBlock):
    _modulated = False

    def __init__(self, channels, kernel_size=(1, 1), strides=(1, 1), padding=(0, 0),
                 dilation=(1, 1), groups=1, num_deformable_group=1, layout='NCHW',
                 use_bias=True, in_channels=0, activation=None, weight_initializer=None,
                 bias_initializer='zeros', offset_weight_initializer='zeros',
                 offset_bias_initializer='zeros', offset_use_bias=True, op_name=None, adj=None,
                 prefix=None, params=None):
        super().__init__(prefix=prefix, params=params)
        name = type(self).__name__
        if layout not in ('NCHW', 'NHWC'):
            raise ValueError(f"{name}: layout must be 'NCHW' or 'NHWC', got {layout!r}")
        self._last = check_layout(layout, 2, name)
        self._layout = layout
        if not isinstance(channels, numbers.Integral) or channels <= 0:
            raise ValueError(f'{name}: channels must be a positive int, got {channels!r}')
        self._kernel = _pair(kernel_size, 'kernel_size', name, 1)
        self._strides = _pair(strides, 'strides', name, 1)
        self._padding = _pair(padding, 'padding', name, 0)
        self._dilation = _pair(dilation, 'dilation', name, 1)
        self._groups, self._dg = int(groups), int(num_deformable_group)
        self._channels, self._in_channels = int(channels), int(in_channels)
        K = self._kernel[0] * self._kernel[1]
        self._offset_channels = (3 if self._modulated else 2) * K * self._dg
        self._split = 2 * K * self._dg
        if self._groups < 1 or self._dg < 1:
            raise ValueError(f'{name}: groups and num_deformable_group must be >= 1')
        for what, n in (('channels', self._channels), ('offset channels', self._offset_channels),
                        ('in_channels', self._in_channels)):
            if n % self._groups:
                raise ValueError(f'{name}: {what}={n} is not divisible by groups={self._groups}')
        if self._in_channels % self._dg:
            raise ValueError(f'{name}: in_channels={self._in_channels} is not divisible by '
                             f'num_deformable_group={self._dg}')
        offset = [Parameter('offset_weight', shape=self._wshape(self._offset_channels,
                                                                in_channels),
                            init=offset_weight_initializer, allow_deferred_init=True),
                  Parameter('offset_bias', shape=(self._offset_channels,),
                            init=offset_bias_initializer, allow_deferred_init=True)
                  if offset_use_bias else None]
        main = [Parameter('deformable_conv_weight', shape=self._wshape(self._channels,
                                                                       in_channels),
                          init=weight_initializer, allow_deferred_init=True),
                Parameter('deformable_conv_bias', shape=(self._channels,),
                          init=bias_initializer, allow_deferred_init=True)
                if use_bias else None]
        # Registration order follows Gluon's (v1: offset first; v2: main first).
        order = (main, offset) if self._modulated else (offset, main)
        for pair in order:
            for p in pair:
                if p is not None:
                    setattr(self, p.name, p)
        if offset[1] is None:
            self.offset_bias = None
        if main[1] is None:
            self.deformable_conv_bias = None
        self.act = _activation_block(activation)

    def _wshape(self, out_channels, in_channels):
        kh, kw = self._kernel
        per = in_channels // self._groups
        return (out_channels, kh, kw, per) if self._last else (out_channels, per, kh, kw)

    def forward(self, x):
        name = type(self).__name__
        check_input_rank(x, 2, self._layout, name)
        c_in = x.shape[-1 if self._last else 1]
        if self.deformable_conv_weight._data is None or self.offset_weight._data is None:
            if c_in % self._groups or c_in % self._dg:
                raise ValueError(f'{name}: input has {c_in} channels (shape {x.shape}), not '
                                 f'divisible by groups={self._groups} and '
                                 f'num_deformable_group={self._dg}')
            deferred_shape(self.offset_weight, self._wshape(self._offset_channels, c_in))
            deferred_shape(self.deformable_conv_weight, self._wshape(self._channels, c_in))
            for p in (self.offset_bias, self.deformable_conv_bias):
                if p is not None:
                    deferred_shape(p, p.shape)
        ctx = x.context
        ob = None if self.offset_bias is None else self.offset_bias.data(ctx)
        b = None if self.deformable_conv_bias is None else self.deformable_conv_bias.data(ctx)
        conv_args = (self._strides, self._padding, self._dilation, self._groups)
        offset = ops.convolution(x, self.offset_weight.data(ctx), ob, *conv_args,
                                 layout=self._layout, name=name)
        w = self.deformable_conv_weight.data(ctx)
        if self._modulated:
            axis = 3 if self._last else 1
            head = [slice(None)] * 4
            tail = [slice(None)] * 4
            head[axis] = slice(0, self._split)
            tail[axis] = slice(self._split, None)
            mask = ops.sigmoid(offset[tuple(tail)]) * 2
            out = ops.modulated_deformable_convolution(
                x, offset[tuple(head)], mask, w, b, *conv_args, self._dg, layout=self._layout,
                name=name)
        else:
            out = ops.deformable_convolution(x, offset, w, b, *conv_args, self._dg,
                                             layout=self._layout, name=name)
        if self.act is not None:
            out = self.act(out)
        return out

    def __repr__(self):
        shape = self.deformable_conv_weight.shape
        in_ch = (shape[-1] if self._last else shape[1]) * self._groups
        s = (f'{type(self).__name__}({in_ch or None} -> {self._channels}, '
             f'kernel_size={self._kernel}, stride={self._strides}')
        if self._padding != (0, 0):
            s += f', padding={self._padding}'
        if self._dilation != (1, 1):
            s += f', dilation={self._dilation}'
        if self._groups != 1:
            s += f', groups={self._groups}'
        if self._dg != 1:
            s += f', num_deformable_group={self._dg}'
        if self.deformable_conv_bias is None:
            s += ', bias=False'
        if self.act is not None:
            s += f', {self.act}'
        return s + ')'


class DeformableConvolution(_Deformable):
    """2-D deformable convolution v1 (Dai et al., 2017): a convolution whose sampling grid is
    shifted by learned offsets (from the built-in offset convolution), bilinear sampling.

    Args:
        channels: output channels.
        kernel_size, strides, padding, dilation: int or 2-tuple.
        groups: convolution groups (also used by the offset convolution).
        num_deformable_group: input channel blocks with their own offsets.
        layout: 'NCHW' or 'NHWC'.
        use_bias, in_channels, activation, weight_initializer, bias_initializer: as Conv2D.
        offset_weight_initializer, offset_bias_initializer, offset_use_bias: the offset
            convolution's (zeros by default: the layer starts as an ordinary convolution).
        op_name, adj, prefix, params: accepted for Gluon compatibility.

    Output size as Conv2D: ``floor((x + 2p - d(k-1) - 1) / s) + 1``.
    """
    _modulated = False


class ModulatedDeformableConvolution(_Deformable):
    """2-D deformable convolution v2 (Zhu et al., 2018): v1 plus a learned modulation mask,
    ``2 * sigmoid`` of the last ``K*num_deformable_group`` offset-convolution channels.

    Args: as :class:`DeformableConvolution`.
    """
    _modulated = True
