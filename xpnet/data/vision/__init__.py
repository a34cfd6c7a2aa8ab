"""``xpnet.data.vision``: MNIST, FashionMNIST, CIFAR10, CIFAR100 read from local files, and
``transforms`` (ToTensor, Normalize, Cast, Compose, random flips).

Example::

    from xpnet.data.vision import CIFAR10, transforms
    train = CIFAR10('~/data/cifar10').transform_first(transforms.ToTensor())
"""
from .datasets import *  # noqa: F401,F403
from . import datasets, transforms  # noqa: F401
from .datasets import __all__ as _datasets_all

__all__ = _datasets_all + ['transforms']
