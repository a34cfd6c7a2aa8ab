"""VGG 11/13/16/19 (Simonyan & Zisserman 2014), with or without BatchNorm, as in Gluon 1.x.

Example::

    net = vgg16_bn(classes=10)
"""
from .... import initializer as _init
from ....layers import (Activation, BatchNorm, Conv2D, Dense, Dropout,
                        HybridSequential, MaxPool2D)
from ._common import Classifier, finish

__all__ = ['VGG', 'vgg11', 'vgg13', 'vgg16', 'vgg19', 'vgg11_bn', 'vgg13_bn', 'vgg16_bn',
           'vgg19_bn', 'get_vgg']


class VGG(Classifier):
    """3x3 convolution stacks separated by max pooling, two 4096-unit dense layers with
    dropout (all in ``features``), and ``output``.

    Args:
        layers: convolutions per stack (five ints).
        filters: channels per stack (five ints).
        classes: size of the output layer.
        batch_norm: BatchNorm after every convolution.
    """

    def __init__(self, layers, filters, classes=1000, batch_norm=False, **kwargs):
        super().__init__(**kwargs)
        if len(layers) != len(filters):
            raise ValueError('VGG: layers and filters must have the same length')
        with self.name_scope():
            self.features = self._make_features(layers, filters, batch_norm)
            self.features.add(Dense(4096, activation='relu', weight_initializer='normal',
                                    bias_initializer='zeros'),
                              Dropout(rate=0.5),
                              Dense(4096, activation='relu', weight_initializer='normal',
                                    bias_initializer='zeros'),
                              Dropout(rate=0.5))
            self.output = Dense(classes, weight_initializer='normal', bias_initializer='zeros')

    @staticmethod
    def _make_features(layers, filters, batch_norm):
        featurizer = HybridSequential(prefix='')
        for num, channels in zip(layers, filters):
            for _ in range(num):
                featurizer.add(Conv2D(channels, kernel_size=3, padding=1,
                                      weight_initializer=_init.Xavier(
                                          rnd_type='gaussian', factor_type='out', magnitude=2),
                                      bias_initializer='zeros'))
                if batch_norm:
                    featurizer.add(BatchNorm())
                featurizer.add(Activation('relu'))
            featurizer.add(MaxPool2D(strides=2))
        return featurizer



vgg_spec = {11: ([1, 1, 2, 2, 2], [64, 128, 256, 512, 512]),
            13: ([2, 2, 2, 2, 2], [64, 128, 256, 512, 512]),
            16: ([2, 2, 3, 3, 3], [64, 128, 256, 512, 512]),
            19: ([2, 2, 4, 4, 4], [64, 128, 256, 512, 512])}


def get_vgg(num_layers, pretrained=False, ctx=None, root=None, **kwargs):
    """VGG of depth ``num_layers`` (11, 13, 16, 19); ``batch_norm=True`` for the BN variant.

    Args:
        pretrained: load the model-zoo file (``vgg16`` or ``vgg16_bn``...) from ``root``.
        ctx: where the pretrained weights go (cpu by default).
        root: the model store (``~/.mxnet/models`` by default).
        **kwargs: ``classes``, ``batch_norm``, ``prefix``...
    """
    if num_layers not in vgg_spec:
        raise ValueError(f'Invalid number of layers: {num_layers}. Options are '
                         f'{sorted(vgg_spec)}')
    layers, filters = vgg_spec[num_layers]
    net = VGG(layers, filters, **kwargs)
    suffix = '_bn' if kwargs.get('batch_norm') else ''
    return finish(net, f'vgg{num_layers}{suffix}', pretrained, ctx, root)


def _constructor(depth, batch_norm):
    def build(**kwargs):
        if batch_norm:
            kwargs['batch_norm'] = True
        return get_vgg(depth, **kwargs)
    build.__name__ = f'vgg{depth}' + ('_bn' if batch_norm else '')
    build.__doc__ = (f'VGG-{depth}' + (' with BatchNorm' if batch_norm else '') +
                     '; see :func:`get_vgg` for the arguments.')
    return build


vgg11, vgg13, vgg16, vgg19 = (_constructor(d, False) for d in (11, 13, 16, 19))
vgg11_bn, vgg13_bn, vgg16_bn, vgg19_bn = (_constructor(d, True) for d in (11, 13, 16, 19))
