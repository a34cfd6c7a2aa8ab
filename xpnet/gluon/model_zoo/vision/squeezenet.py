"""SqueezeNet 1.0 and 1.1 (Iandola et al. 2016) with Gluon 1.x's structure and names.

The output is a 1x1 convolution, ReLU and a 13x13 average pooling, so inputs must be
224x224 (or large enough to leave 13x13 maps).
"""
from ....layers import (Activation, AvgPool2D, Conv2D, Dropout, Flatten,
                        HybridConcurrent, HybridSequential, MaxPool2D)
from ._common import Classifier, finish

__all__ = ['SqueezeNet', 'squeezenet1_0', 'squeezenet1_1']


def _make_fire(squeeze_channels, expand1x1_channels, expand3x3_channels):
    out = HybridSequential(prefix='')
    out.add(_make_fire_conv(squeeze_channels, 1))
    paths = HybridConcurrent(axis=1, prefix='')
    paths.add(_make_fire_conv(expand1x1_channels, 1))
    paths.add(_make_fire_conv(expand3x3_channels, 3, 1))
    out.add(paths)
    return out


def _make_fire_conv(channels, kernel_size, padding=0):
    out = HybridSequential(prefix='')
    out.add(Conv2D(channels, kernel_size, padding=padding), Activation('relu'))
    return out


class SqueezeNet(Classifier):
    """SqueezeNet: fire modules (a 1x1 squeeze, then 1x1 and 3x3 expansions concatenated).

    Args:
        version: '1.0' or '1.1' (fewer operations, same accuracy).
        classes: number of output classes.
    """

    def __init__(self, version, classes=1000, **kwargs):
        super().__init__(**kwargs)
        if version not in ('1.0', '1.1'):
            raise ValueError(f'Unsupported SqueezeNet version {version}: 1.0 or 1.1 expected')
        with self.name_scope():
            self.features = HybridSequential(prefix='')
            f = self.features
            if version == '1.0':
                f.add(Conv2D(96, kernel_size=7, strides=2), Activation('relu'))
                f.add(MaxPool2D(pool_size=3, strides=2, ceil_mode=True))
                f.add(_make_fire(16, 64, 64), _make_fire(16, 64, 64),
                      _make_fire(32, 128, 128))
                f.add(MaxPool2D(pool_size=3, strides=2, ceil_mode=True))
                f.add(_make_fire(32, 128, 128), _make_fire(48, 192, 192),
                      _make_fire(48, 192, 192), _make_fire(64, 256, 256))
                f.add(MaxPool2D(pool_size=3, strides=2, ceil_mode=True))
                f.add(_make_fire(64, 256, 256))
            else:
                f.add(Conv2D(64, kernel_size=3, strides=2), Activation('relu'))
                f.add(MaxPool2D(pool_size=3, strides=2, ceil_mode=True))
                f.add(_make_fire(16, 64, 64), _make_fire(16, 64, 64))
                f.add(MaxPool2D(pool_size=3, strides=2, ceil_mode=True))
                f.add(_make_fire(32, 128, 128), _make_fire(32, 128, 128))
                f.add(MaxPool2D(pool_size=3, strides=2, ceil_mode=True))
                f.add(_make_fire(48, 192, 192), _make_fire(48, 192, 192),
                      _make_fire(64, 256, 256), _make_fire(64, 256, 256))
            f.add(Dropout(0.5))
            self.output = HybridSequential(prefix='')
            self.output.add(Conv2D(classes, kernel_size=1), Activation('relu'), AvgPool2D(13),
                            Flatten())



def _get(version, pretrained=False, ctx=None, root=None, **kwargs):
    return finish(SqueezeNet(version, **kwargs), f'squeezenet{version}', pretrained, ctx,
                  root)


def squeezenet1_0(**kwargs):
    """SqueezeNet 1.0 (``pretrained``, ``ctx``, ``root``, ``classes``...)."""
    return _get('1.0', **kwargs)


def squeezenet1_1(**kwargs):
    """SqueezeNet 1.1 (``pretrained``, ``ctx``, ``root``, ``classes``...)."""
    return _get('1.1', **kwargs)
