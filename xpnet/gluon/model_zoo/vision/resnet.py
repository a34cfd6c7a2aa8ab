"""ResNet V1 and V2 (He et al. 2015, 2016) with Gluon 1.x's structure and parameter names.

V1 blocks add the shortcut before the final ReLU; V2 blocks are pre-activation
(BatchNorm + ReLU before each convolution) and the network ends with BatchNorm + ReLU.
Depths 18 and 34 use basic blocks (two 3x3 convolutions), 50, 101 and 152 bottlenecks.

Example::

    net = resnet50_v2(classes=10)
    net.initialize()
    y = net(nd.zeros((1, 3, 224, 224)))      # (1, 10)
"""
from .... import ops
from ....layers import (BatchNorm, Activation, Conv2D, Dense, Flatten, GlobalAvgPool2D,
                        HybridBlock, HybridSequential, MaxPool2D)
from ._common import Classifier, finish

__all__ = ['ResNetV1', 'ResNetV2', 'BasicBlockV1', 'BasicBlockV2', 'BottleneckV1',
           'BottleneckV2', 'resnet18_v1', 'resnet34_v1', 'resnet50_v1', 'resnet101_v1',
           'resnet152_v1', 'resnet18_v2', 'resnet34_v2', 'resnet50_v2', 'resnet101_v2',
           'resnet152_v2', 'get_resnet']


def _conv3x3(channels, stride, in_channels):
    return Conv2D(channels, kernel_size=3, strides=stride, padding=1, use_bias=False,
                  in_channels=in_channels)


def _downsample(channels, stride, in_channels, with_bn):
    out = HybridSequential(prefix='')
    out.add(Conv2D(channels, kernel_size=1, strides=stride, use_bias=False,
                   in_channels=in_channels))
    if with_bn:
        out.add(BatchNorm())
    return out


class _ResidualV1(HybridBlock):
    """``relu(body(x) + shortcut(x))``, the shortcut projected when ``downsample`` exists."""

    def forward(self, x):
        residual = self.downsample(x) if self.downsample is not None else x
        return ops.relu(self.body(x) + residual)


class BasicBlockV1(_ResidualV1):
    """Two 3x3 convolutions with BatchNorm; ReLU after adding the shortcut.

    Args:
        channels: output channels.
        stride: stride of the first convolution (and of the downsampling shortcut).
        downsample: project the shortcut with a 1x1 convolution + BatchNorm.
        in_channels: input channels (0 infers them).
    """

    def __init__(self, channels, stride, downsample=False, in_channels=0, **kwargs):
        super().__init__(**kwargs)
        self.body = HybridSequential(prefix='')
        self.body.add(_conv3x3(channels, stride, in_channels), BatchNorm(), Activation('relu'),
                      _conv3x3(channels, 1, channels), BatchNorm())
        self.downsample = _downsample(channels, stride, in_channels, True) \
            if downsample else None


class BottleneckV1(_ResidualV1):
    """1x1 (reduce, carrying the stride), 3x3, 1x1 (expand) convolutions with BatchNorm; ReLU
    after adding the shortcut. Arguments as :class:`BasicBlockV1`."""

    def __init__(self, channels, stride, downsample=False, in_channels=0, **kwargs):
        super().__init__(**kwargs)
        self.body = HybridSequential(prefix='')
        self.body.add(Conv2D(channels // 4, kernel_size=1, strides=stride), BatchNorm(),
                      Activation('relu'), _conv3x3(channels // 4, 1, channels // 4),
                      BatchNorm(), Activation('relu'),
                      Conv2D(channels, kernel_size=1, strides=1), BatchNorm())
        self.downsample = _downsample(channels, stride, in_channels, True) \
            if downsample else None


class BasicBlockV2(HybridBlock):
    """Pre-activation basic block: BN, ReLU, 3x3 conv, BN, ReLU, 3x3 conv, plus the shortcut
    (projected from the activated input when ``downsample``). Arguments as
    :class:`BasicBlockV1`."""

    def __init__(self, channels, stride, downsample=False, in_channels=0, **kwargs):
        super().__init__(**kwargs)
        self.bn1 = BatchNorm()
        self.conv1 = _conv3x3(channels, stride, in_channels)
        self.bn2 = BatchNorm()
        self.conv2 = _conv3x3(channels, 1, channels)
        self.downsample = Conv2D(channels, 1, stride, use_bias=False,
                                 in_channels=in_channels) if downsample else None

    def forward(self, x):
        residual = x
        x = ops.relu(self.bn1(x))
        if self.downsample is not None:
            residual = self.downsample(x)
        x = self.conv2(ops.relu(self.bn2(self.conv1(x))))
        return x + residual


class BottleneckV2(HybridBlock):
    """Pre-activation bottleneck (the stride on the 3x3 convolution). Arguments as
    :class:`BasicBlockV1`."""

    def __init__(self, channels, stride, downsample=False, in_channels=0, **kwargs):
        super().__init__(**kwargs)
        self.bn1 = BatchNorm()
        self.conv1 = Conv2D(channels // 4, kernel_size=1, strides=1, use_bias=False)
        self.bn2 = BatchNorm()
        self.conv2 = _conv3x3(channels // 4, stride, channels // 4)
        self.bn3 = BatchNorm()
        self.conv3 = Conv2D(channels, kernel_size=1, strides=1, use_bias=False)
        self.downsample = Conv2D(channels, 1, stride, use_bias=False,
                                 in_channels=in_channels) if downsample else None

    def forward(self, x):
        residual = x
        x = ops.relu(self.bn1(x))
        if self.downsample is not None:
            residual = self.downsample(x)
        x = ops.relu(self.bn2(self.conv1(x)))
        x = ops.relu(self.bn3(self.conv2(x)))
        return self.conv3(x) + residual


def _make_stage(block, layers, channels, stride, stage_index, in_channels):
    stage = HybridSequential(prefix=f'stage{stage_index}_')
    with stage.name_scope():
        stage.add(block(channels, stride, channels != in_channels, in_channels=in_channels,
                        prefix=''))
        for _ in range(layers - 1):
            stage.add(block(channels, 1, False, in_channels=channels, prefix=''))
    return stage


class ResNetV1(Classifier):
    """ResNet V1: ``features`` (stem, four stages, global average pooling) and ``output``.

    Args:
        block: :class:`BasicBlockV1` or :class:`BottleneckV1`.
        layers: blocks per stage (four ints).
        channels: stem channels then each stage's output channels (five ints).
        classes: size of the output layer.
        thumbnail: a 3x3 stride-1 stem without pooling (for 32x32 images).
    """

    def __init__(self, block, layers, channels, classes=1000, thumbnail=False, **kwargs):
        super().__init__(**kwargs)
        if len(layers) != len(channels) - 1:
            raise ValueError('ResNetV1: channels must have one entry more than layers')
        with self.name_scope():
            self.features = HybridSequential(prefix='')
            if thumbnail:
                self.features.add(_conv3x3(channels[0], 1, 0))
            else:
                self.features.add(Conv2D(channels[0], 7, 2, 3, use_bias=False), BatchNorm(),
                                  Activation('relu'), MaxPool2D(3, 2, 1))
            for i, num_layer in enumerate(layers):
                self.features.add(_make_stage(block, num_layer, channels[i + 1],
                                              1 if i == 0 else 2, i + 1, channels[i]))
            self.features.add(GlobalAvgPool2D())
            self.output = Dense(classes, in_units=channels[-1])



class ResNetV2(Classifier):
    """ResNet V2 (pre-activation): a non-affine BatchNorm on the input, the stem, four
    stages, BatchNorm + ReLU, global pooling; then ``output``. Arguments as
    :class:`ResNetV1` (blocks :class:`BasicBlockV2` or :class:`BottleneckV2`)."""

    def __init__(self, block, layers, channels, classes=1000, thumbnail=False, **kwargs):
        super().__init__(**kwargs)
        if len(layers) != len(channels) - 1:
            raise ValueError('ResNetV2: channels must have one entry more than layers')
        with self.name_scope():
            self.features = HybridSequential(prefix='')
            self.features.add(BatchNorm(scale=False, center=False))
            if thumbnail:
                self.features.add(_conv3x3(channels[0], 1, 0))
            else:
                self.features.add(Conv2D(channels[0], 7, 2, 3, use_bias=False), BatchNorm(),
                                  Activation('relu'), MaxPool2D(3, 2, 1))
            in_channels = channels[0]
            for i, num_layer in enumerate(layers):
                self.features.add(_make_stage(block, num_layer, channels[i + 1],
                                              1 if i == 0 else 2, i + 1, in_channels))
                in_channels = channels[i + 1]
            self.features.add(BatchNorm(), Activation('relu'), GlobalAvgPool2D(), Flatten())
            self.output = Dense(classes, in_units=in_channels)



resnet_spec = {18: ('basic_block', [2, 2, 2, 2], [64, 64, 128, 256, 512]),
               34: ('basic_block', [3, 4, 6, 3], [64, 64, 128, 256, 512]),
               50: ('bottle_neck', [3, 4, 6, 3], [64, 256, 512, 1024, 2048]),
               101: ('bottle_neck', [3, 4, 23, 3], [64, 256, 512, 1024, 2048]),
               152: ('bottle_neck', [3, 8, 36, 3], [64, 256, 512, 1024, 2048])}
resnet_net_versions = [ResNetV1, ResNetV2]
resnet_block_versions = [{'basic_block': BasicBlockV1, 'bottle_neck': BottleneckV1},
                         {'basic_block': BasicBlockV2, 'bottle_neck': BottleneckV2}]


def get_resnet(version, num_layers, pretrained=False, ctx=None, root=None, **kwargs):
    """ResNet ``version`` (1 or 2) of depth ``num_layers`` (18, 34, 50, 101, 152).

    Args:
        pretrained: load ``resnet{num_layers}_v{version}``'s model-zoo file from ``root``.
        ctx: where the pretrained weights go (cpu by default).
        root: the model store (``~/.mxnet/models`` by default).
        **kwargs: ``classes``, ``thumbnail``, ``prefix``...
    """
    if num_layers not in resnet_spec:
        raise ValueError(f'Invalid number of layers: {num_layers}. Options are '
                         f'{sorted(resnet_spec)}')
    if version not in (1, 2):
        raise ValueError(f'Invalid resnet version: {version}. Options are 1 and 2.')
    block_type, layers, channels = resnet_spec[num_layers]
    block = resnet_block_versions[version - 1][block_type]
    net = resnet_net_versions[version - 1](block, layers, channels, **kwargs)
    return finish(net, f'resnet{num_layers}_v{version}', pretrained, ctx, root)


def _constructor(version, depth):
    def build(**kwargs):
        return get_resnet(version, depth, **kwargs)
    build.__name__ = f'resnet{depth}_v{version}'
    build.__doc__ = (f'ResNet-{depth} V{version}; see :func:`get_resnet` for the arguments '
                     '(``pretrained``, ``ctx``, ``root``, ``classes``...).')
    return build


resnet18_v1, resnet34_v1, resnet50_v1, resnet101_v1, resnet152_v1 = (
    _constructor(1, d) for d in (18, 34, 50, 101, 152))
resnet18_v2, resnet34_v2, resnet50_v2, resnet101_v2, resnet152_v2 = (
    _constructor(2, d) for d in (18, 34, 50, 101, 152))
