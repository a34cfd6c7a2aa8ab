"""``xpnet.data``: datasets, samplers and the DataLoader (Gluon's ``gluon.data``), plus the
local-file readers ``xpnet.data.vision`` (MNIST, FashionMNIST, CIFAR10/100, transforms) and
``xpnet.data.text`` (WikiText2/103, Vocab).

Example::

    from xpnet.data import ArrayDataset, DataLoader
    loader = DataLoader(ArrayDataset(x, y), batch_size=32, shuffle=True)
    for data, label in loader:
        ...
"""
from .dataset import *  # noqa: F401,F403
from .sampler import *  # noqa: F401,F403
from .dataloader import *  # noqa: F401,F403
from .prefetch import *  # noqa: F401,F403
from . import dataset, sampler, dataloader, prefetch, vision, text  # noqa: F401
from .dataset import __all__ as _d
from .sampler import __all__ as _s
from .dataloader import __all__ as _l
from .prefetch import __all__ as _p

__all__ = _d + _s + _l + _p + ['vision', 'text']
