"""AlexNet (Krizhevsky 2014, "One weird trick...") with Gluon 1.x's structure and names.

Example::

    net = alexnet(classes=10)
    net.initialize()
    net(nd.zeros((1, 3, 224, 224)))          # (1, 10); needs at least 63x63 inputs
"""
from ....layers import Conv2D, Dense, Dropout, Flatten, HybridSequential, MaxPool2D
from ._common import Classifier, finish

__all__ = ['AlexNet', 'alexnet']


class AlexNet(Classifier):
    """Five convolutions and three dense layers (``features`` then ``output``).

    Args:
        classes: size of the output layer.
    """

    def __init__(self, classes=1000, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.features = HybridSequential(prefix='')
            with self.features.name_scope():
                self.features.add(
                    Conv2D(64, kernel_size=11, strides=4, padding=2, activation='relu'),
                    MaxPool2D(pool_size=3, strides=2),
                    Conv2D(192, kernel_size=5, padding=2, activation='relu'),
                    MaxPool2D(pool_size=3, strides=2),
                    Conv2D(384, kernel_size=3, padding=1, activation='relu'),
                    Conv2D(256, kernel_size=3, padding=1, activation='relu'),
                    Conv2D(256, kernel_size=3, padding=1, activation='relu'),
                    MaxPool2D(pool_size=3, strides=2),
                    Flatten(),
                    Dense(4096, activation='relu'), Dropout(0.5),
                    Dense(4096, activation='relu'), Dropout(0.5))
            self.output = Dense(classes)



def alexnet(pretrained=False, ctx=None, root=None, **kwargs):
    """AlexNet; ``pretrained`` loads ``alexnet``'s model-zoo file from ``root`` onto ``ctx``.
    ``**kwargs`` go to :class:`AlexNet` (``classes``, ``prefix``...)."""
    return finish(AlexNet(**kwargs), 'alexnet', pretrained, ctx, root)
