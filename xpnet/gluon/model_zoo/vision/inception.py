"""Inception V3 (Szegedy et al. 2015) with Gluon 1.x's structure and names.

The network ends with an 8x8 average pooling: inputs are 299x299.
"""
from ....layers import (Activation, AvgPool2D, BatchNorm, Conv2D, Dense, Dropout,
                        HybridConcurrent, HybridSequential, MaxPool2D)
from ._common import Classifier, finish

__all__ = ['Inception3', 'inception_v3']

_SETTINGS = ('channels', 'kernel_size', 'strides', 'padding')


def _make_basic_conv(**kwargs):
    out = HybridSequential(prefix='')
    out.add(Conv2D(use_bias=False, **kwargs), BatchNorm(epsilon=0.001), Activation('relu'))
    return out


def _make_branch(use_pool, *conv_settings):
    out = HybridSequential(prefix='')
    if use_pool == 'avg':
        out.add(AvgPool2D(pool_size=3, strides=1, padding=1))
    elif use_pool == 'max':
        out.add(MaxPool2D(pool_size=3, strides=2))
    for setting in conv_settings:
        out.add(_make_basic_conv(**{k: v for k, v in zip(_SETTINGS, setting)
                                    if v is not None}))
    return out


def _make_A(pool_features, prefix):
    out = HybridConcurrent(axis=1, prefix=prefix)
    with out.name_scope():
        out.add(_make_branch(None, (64, 1, None, None)))
        out.add(_make_branch(None, (48, 1, None, None), (64, 5, None, 2)))
        out.add(_make_branch(None, (64, 1, None, None), (96, 3, None, 1), (96, 3, None, 1)))
        out.add(_make_branch('avg', (pool_features, 1, None, None)))
    return out


def _make_B(prefix):
    out = HybridConcurrent(axis=1, prefix=prefix)
    with out.name_scope():
        out.add(_make_branch(None, (384, 3, 2, None)))
        out.add(_make_branch(None, (64, 1, None, None), (96, 3, None, 1), (96, 3, 2, None)))
        out.add(_make_branch('max'))
    return out


def _make_C(channels_7x7, prefix):
    c7 = channels_7x7
    out = HybridConcurrent(axis=1, prefix=prefix)
    with out.name_scope():
        out.add(_make_branch(None, (192, 1, None, None)))
        out.add(_make_branch(None, (c7, 1, None, None), (c7, (1, 7), None, (0, 3)),
                             (192, (7, 1), None, (3, 0))))
        out.add(_make_branch(None, (c7, 1, None, None), (c7, (7, 1), None, (3, 0)),
                             (c7, (1, 7), None, (0, 3)), (c7, (7, 1), None, (3, 0)),
                             (192, (1, 7), None, (0, 3))))
        out.add(_make_branch('avg', (192, 1, None, None)))
    return out


def _make_D(prefix):
    out = HybridConcurrent(axis=1, prefix=prefix)
    with out.name_scope():
        out.add(_make_branch(None, (192, 1, None, None), (320, 3, 2, None)))
        out.add(_make_branch(None, (192, 1, None, None), (192, (1, 7), None, (0, 3)),
                             (192, (7, 1), None, (3, 0)), (192, 3, 2, None)))
        out.add(_make_branch('max'))
    return out


def _make_E(prefix):
    out = HybridConcurrent(axis=1, prefix=prefix)
    with out.name_scope():
        out.add(_make_branch(None, (320, 1, None, None)))

        branch_3x3 = HybridSequential(prefix='')
        out.add(branch_3x3)
        branch_3x3.add(_make_branch(None, (384, 1, None, None)))
        branch_3x3_split = HybridConcurrent(axis=1, prefix='')
        branch_3x3_split.add(_make_branch(None, (384, (1, 3), None, (0, 1))))
        branch_3x3_split.add(_make_branch(None, (384, (3, 1), None, (1, 0))))
        branch_3x3.add(branch_3x3_split)

        branch_3x3dbl = HybridSequential(prefix='')
        out.add(branch_3x3dbl)
        branch_3x3dbl.add(_make_branch(None, (448, 1, None, None), (384, 3, None, 1)))
        branch_3x3dbl_split = HybridConcurrent(axis=1, prefix='')
        branch_3x3dbl.add(branch_3x3dbl_split)
        branch_3x3dbl_split.add(_make_branch(None, (384, (1, 3), None, (0, 1))))
        branch_3x3dbl_split.add(_make_branch(None, (384, (3, 1), None, (1, 0))))

        out.add(_make_branch('avg', (192, 1, None, None)))
    return out


class Inception3(Classifier):
    """Inception V3: a convolutional stem, the A/B/C/D/E mixed blocks, 8x8 average pooling
    and dropout (``features``), then ``output``.

    Args:
        classes: size of the output layer.
    """

    def __init__(self, classes=1000, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.features = HybridSequential(prefix='')
            f = self.features
            f.add(_make_basic_conv(channels=32, kernel_size=3, strides=2))
            f.add(_make_basic_conv(channels=32, kernel_size=3))
            f.add(_make_basic_conv(channels=64, kernel_size=3, padding=1))
            f.add(MaxPool2D(pool_size=3, strides=2))
            f.add(_make_basic_conv(channels=80, kernel_size=1))
            f.add(_make_basic_conv(channels=192, kernel_size=3))
            f.add(MaxPool2D(pool_size=3, strides=2))
            f.add(_make_A(32, 'A1_'), _make_A(64, 'A2_'), _make_A(64, 'A3_'), _make_B('B_'))
            f.add(_make_C(128, 'C1_'), _make_C(160, 'C2_'), _make_C(160, 'C3_'),
                  _make_C(192, 'C4_'))
            f.add(_make_D('D_'), _make_E('E1_'), _make_E('E2_'))
            f.add(AvgPool2D(pool_size=8), Dropout(0.5))
            self.output = Dense(classes)



def inception_v3(pretrained=False, ctx=None, root=None, **kwargs):
    """Inception V3; ``pretrained`` loads ``inceptionv3``'s model-zoo file from ``root``
    onto ``ctx``. ``**kwargs`` go to :class:`Inception3`."""
    return finish(Inception3(**kwargs), 'inceptionv3', pretrained, ctx, root)

