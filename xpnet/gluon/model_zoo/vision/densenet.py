"""DenseNet 121/161/169/201 (Huang et al. 2016) with Gluon 1.x's structure and names.

The network ends with a 7x7 average pooling, so inputs must be 224x224 (or large enough to
leave 7x7 maps).
"""
from ....layers import (Activation, AvgPool2D, BatchNorm, Conv2D, Dense, Dropout, Flatten,
                        HybridConcurrent, HybridSequential, Identity, MaxPool2D)
from ._common import Classifier, finish

__all__ = ['DenseNet', 'densenet121', 'densenet161', 'densenet169', 'densenet201']


def _make_dense_block(num_layers, bn_size, growth_rate, dropout, stage_index):
    out = HybridSequential(prefix=f'stage{stage_index}_')
    with out.name_scope():
        for _ in range(num_layers):
            out.add(_make_dense_layer(growth_rate, bn_size, dropout))
    return out


def _make_dense_layer(growth_rate, bn_size, dropout):
    new_features = HybridSequential(prefix='')
    new_features.add(BatchNorm(), Activation('relu'),
                     Conv2D(bn_size * growth_rate, kernel_size=1, use_bias=False),
                     BatchNorm(), Activation('relu'),
                     Conv2D(growth_rate, kernel_size=3, padding=1, use_bias=False))
    if dropout:
        new_features.add(Dropout(dropout))
    out = HybridConcurrent(axis=1, prefix='')
    out.add(Identity(), new_features)
    return out


def _make_transition(num_output_features):
    out = HybridSequential(prefix='')
    out.add(BatchNorm(), Activation('relu'),
            Conv2D(num_output_features, kernel_size=1, use_bias=False),
            AvgPool2D(pool_size=2, strides=2))
    return out


class DenseNet(Classifier):
    """DenseNet: dense blocks (each layer's output concatenated to its input) joined by
    transitions that halve the channels and the resolution.

    Args:
        num_init_features: channels of the stem convolution.
        growth_rate: channels each dense layer adds.
        block_config: layers per dense block.
        bn_size: bottleneck width multiplier (``bn_size * growth_rate`` channels).
        dropout: dropout rate after each dense layer (0: none).
        classes: size of the output layer.
    """

    def __init__(self, num_init_features, growth_rate, block_config, bn_size=4, dropout=0,
                 classes=1000, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.features = HybridSequential(prefix='')
            self.features.add(Conv2D(num_init_features, kernel_size=7, strides=2, padding=3,
                                     use_bias=False),
                              BatchNorm(), Activation('relu'),
                              MaxPool2D(pool_size=3, strides=2, padding=1))
            num_features = num_init_features
            for i, num_layers in enumerate(block_config):
                self.features.add(_make_dense_block(num_layers, bn_size, growth_rate,
                                                    dropout, i + 1))
                num_features = num_features + num_layers * growth_rate
                if i != len(block_config) - 1:
                    self.features.add(_make_transition(num_features // 2))
                    num_features = num_features // 2
            self.features.add(BatchNorm(), Activation('relu'), AvgPool2D(pool_size=7),
                              Flatten())
            self.output = Dense(classes)



densenet_spec = {121: (64, 32, [6, 12, 24, 16]),
                 161: (96, 48, [6, 12, 36, 24]),
                 169: (64, 32, [6, 12, 32, 32]),
                 201: (64, 32, [6, 12, 48, 32])}


def get_densenet(num_layers, pretrained=False, ctx=None, root=None, **kwargs):
    """DenseNet of depth ``num_layers`` (121, 161, 169, 201); ``pretrained`` loads its
    model-zoo file from ``root`` onto ``ctx``."""
    if num_layers not in densenet_spec:
        raise ValueError(f'Invalid number of layers: {num_layers}. Options are '
                         f'{sorted(densenet_spec)}')
    init_features, growth_rate, block_config = densenet_spec[num_layers]
    net = DenseNet(init_features, growth_rate, block_config, **kwargs)
    return finish(net, f'densenet{num_layers}', pretrained, ctx, root)


def _constructor(depth):
    def build(**kwargs):
        return get_densenet(depth, **kwargs)
    build.__name__ = f'densenet{depth}'
    build.__doc__ = f'DenseNet-{depth}; see :func:`get_densenet` for the arguments.'
    return build


densenet121, densenet161, densenet169, densenet201 = (
    _constructor(d) for d in (121, 161, 169, 201))
