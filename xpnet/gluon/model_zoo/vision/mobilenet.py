"""MobileNet V1 (Howard et al. 2017) and V2 (Sandler et al. 2018) with width multipliers,
with Gluon 1.x's structure and names.

Example::

    net = mobilenet_v2_0_25(classes=10)      # 0.25 width
"""
from .... import ops
from ....layers import (Activation, BatchNorm, Conv2D, Dense, Flatten, GlobalAvgPool2D,
                        HybridBlock, HybridSequential)
from ._common import Classifier, finish

__all__ = ['MobileNet', 'MobileNetV2', 'RELU6', 'LinearBottleneck', 'mobilenet1_0',
           'mobilenet_v2_1_0', 'mobilenet0_75', 'mobilenet_v2_0_75', 'mobilenet0_5',
           'mobilenet_v2_0_5', 'mobilenet0_25', 'mobilenet_v2_0_25', 'get_mobilenet',
           'get_mobilenet_v2']


class RELU6(HybridBlock):
    """``min(max(x, 0), 6)``."""

    def forward(self, x):
        return ops.clip(x, 0, 6)


def _add_conv(out, channels=1, kernel=1, stride=1, pad=0, num_group=1, active=True,
              relu6=False):
    out.add(Conv2D(channels, kernel, stride, pad, groups=num_group, use_bias=False))
    out.add(BatchNorm(scale=True))
    if active:
        out.add(RELU6() if relu6 else Activation('relu'))


def _add_conv_dw(out, dw_channels, channels, stride, relu6=False):
    _add_conv(out, channels=dw_channels, kernel=3, stride=stride, pad=1, num_group=dw_channels,
              relu6=relu6)
    _add_conv(out, channels=channels, relu6=relu6)


class LinearBottleneck(HybridBlock):
    """MobileNetV2's inverted residual: 1x1 expansion by ``t``, 3x3 depthwise convolution,
    linear 1x1 projection; the input is added when the shapes allow it.

    Args:
        in_channels, channels: input and output channels.
        t: expansion factor.
        stride: stride of the depthwise convolution.
    """

    def __init__(self, in_channels, channels, t, stride, **kwargs):
        super().__init__(**kwargs)
        self.use_shortcut = stride == 1 and in_channels == channels
        with self.name_scope():
            self.out = HybridSequential()
            _add_conv(self.out, in_channels * t, relu6=True)
            _add_conv(self.out, in_channels * t, kernel=3, stride=stride, pad=1,
                      num_group=in_channels * t, relu6=True)
            _add_conv(self.out, channels, active=False, relu6=True)

    def forward(self, x):
        out = self.out(x)
        return out + x if self.use_shortcut else out


class MobileNet(Classifier):
    """MobileNet V1: depthwise-separable convolutions, global pooling, ``output``.

    Args:
        multiplier: width multiplier of every layer's channels.
        classes: size of the output layer.
    """

    def __init__(self, multiplier=1.0, classes=1000, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.features = HybridSequential(prefix='')
            with self.features.name_scope():
                _add_conv(self.features, channels=int(32 * multiplier), kernel=3, pad=1,
                          stride=2)
                dw_channels = [int(x * multiplier) for x in
                               [32, 64] + [128] * 2 + [256] * 2 + [512] * 6 + [1024]]
                channels = [int(x * multiplier) for x in
                            [64] + [128] * 2 + [256] * 2 + [512] * 6 + [1024] * 2]
                strides = [1, 2] * 3 + [1] * 5 + [2, 1]
                for dwc, c, s in zip(dw_channels, channels, strides):
                    _add_conv_dw(self.features, dw_channels=dwc, channels=c, stride=s)
                self.features.add(GlobalAvgPool2D(), Flatten())
            self.output = Dense(classes)



class MobileNetV2(Classifier):
    """MobileNet V2: inverted residual blocks with ReLU6, a 1x1 convolution to 1280
    channels, global pooling, and a 1x1 convolution as the classifier.

    Args:
        multiplier: width multiplier (the last 1280 channels grow only when > 1).
        classes: number of output classes.
    """

    def __init__(self, multiplier=1.0, classes=1000, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.features = HybridSequential(prefix='features_')
            with self.features.name_scope():
                _add_conv(self.features, int(32 * multiplier), kernel=3, stride=2, pad=1,
                          relu6=True)
                in_channels_group = [int(x * multiplier) for x in
                                     [32] + [16] + [24] * 2 + [32] * 3 + [64] * 4 + [96] * 3
                                     + [160] * 3]
                channels_group = [int(x * multiplier) for x in
                                  [16] + [24] * 2 + [32] * 3 + [64] * 4 + [96] * 3
                                  + [160] * 3 + [320]]
                ts = [1] + [6] * 16
                strides = [1, 2] * 2 + [1, 1, 2] + [1] * 6 + [2] + [1] * 3
                for in_c, c, t, s in zip(in_channels_group, channels_group, ts, strides):
                    self.features.add(LinearBottleneck(in_channels=in_c, channels=c, t=t,
                                                       stride=s))
                last_channels = int(1280 * multiplier) if multiplier > 1.0 else 1280
                _add_conv(self.features, last_channels, relu6=True)
                self.features.add(GlobalAvgPool2D())
            self.output = HybridSequential(prefix='output_')
            with self.output.name_scope():
                self.output.add(Conv2D(classes, 1, use_bias=False, prefix='pred_'), Flatten())



def _version_suffix(multiplier):
    suffix = f'{multiplier:.2f}'
    return suffix[:-1] if suffix in ('1.00', '0.50') else suffix


def get_mobilenet(multiplier, pretrained=False, ctx=None, root=None, **kwargs):
    """MobileNet V1 of width ``multiplier``; ``pretrained`` loads ``mobilenet<multiplier>``'s
    model-zoo file from ``root`` onto ``ctx``."""
    net = MobileNet(multiplier, **kwargs)
    return finish(net, f'mobilenet{_version_suffix(multiplier)}', pretrained, ctx, root)


def get_mobilenet_v2(multiplier, pretrained=False, ctx=None, root=None, **kwargs):
    """MobileNet V2 of width ``multiplier``; ``pretrained`` loads ``mobilenetv2_<multiplier>``'s
    model-zoo file from ``root`` onto ``ctx``."""
    net = MobileNetV2(multiplier, **kwargs)
    return finish(net, f'mobilenetv2_{_version_suffix(multiplier)}', pretrained, ctx, root)


def _constructor(getter, multiplier, name):
    def build(**kwargs):
        return getter(multiplier, **kwargs)
    build.__name__ = name
    build.__doc__ = (f'{"MobileNetV2" if getter is get_mobilenet_v2 else "MobileNet"} with '
                     f'width multiplier {multiplier} (``pretrained``, ``ctx``, ``root``, '
                     '``classes``...).')
    return build


mobilenet1_0 = _constructor(get_mobilenet, 1.0, 'mobilenet1_0')
mobilenet0_75 = _constructor(get_mobilenet, 0.75, 'mobilenet0_75')
mobilenet0_5 = _constructor(get_mobilenet, 0.5, 'mobilenet0_5')
mobilenet0_25 = _constructor(get_mobilenet, 0.25, 'mobilenet0_25')
mobilenet_v2_1_0 = _constructor(get_mobilenet_v2, 1.0, 'mobilenet_v2_1_0')
mobilenet_v2_0_75 = _constructor(get_mobilenet_v2, 0.75, 'mobilenet_v2_0_75')
mobilenet_v2_0_5 = _constructor(get_mobilenet_v2, 0.5, 'mobilenet_v2_0_5')
mobilenet_v2_0_25 = _constructor(get_mobilenet_v2, 0.25, 'mobilenet_v2_0_25')
