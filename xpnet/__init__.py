"""xpnet: Gluon's layer API and an event-driven Estimator on NumPy (CPU) and CuPy (GPU).

Example::

    import xpnet
    from xpnet import layers as nn
    net = nn.Sequential()
    net.add(nn.Dense(64, activation='relu'), nn.Dense(10))
    est = xpnet.estimator.Estimator(net, xpnet.loss.SoftmaxCrossEntropyLoss())
    est.fit(train_loader, epochs=5)

Gluon 1.x code runs with ``import xpnet as mx``: ``mx.gluon``, ``mx.nd``, ``mx.autograd``,
``mx.metric``, ``mx.optimizer``, ``mx.init``, ``mx.random``, ``mx.context`` and
``mx.test_utils`` are xpnet's modules under MXNet's names (see ``xpnet.gluon``).
"""
__version__ = '0.1.0'

import types as _types

from .backend import Context, cpu, gpu, num_gpus, current_context  # noqa: F401
from .ndarray import NDArray, array  # noqa: F401
from . import ops as _ops  # noqa: F401  (binds NDArray's operators)
from . import autograd, random, nd, parallel  # noqa: F401
from . import init, initializer  # noqa: F401
from . import layers  # noqa: F401
from . import loss, metric, optimizer, lr_scheduler  # noqa: F401
from .trainer import Trainer  # noqa: F401
from . import amp  # noqa: F401
from . import utils, data  # noqa: F401
from . import estimator, handlers  # noqa: F401
from . import backend as context  # noqa: F401  (MXNet's ``mx.context``)
from . import gluon, test_utils  # noqa: F401  (import xpnet as mx: Gluon 1.x code)
from .gluon._alias import alias_module as _alias_module

_alias_module(__name__ + '.context', context)
contrib = _alias_module(__name__ + '.contrib', _types.ModuleType(
    __name__ + '.contrib', "MXNet's ``mx.contrib``: ``amp`` (an alias of xpnet.amp)."))
contrib.amp = _alias_module(__name__ + '.contrib.amp', amp)

__all__ = ['Context', 'cpu', 'gpu', 'num_gpus', 'current_context', 'NDArray', 'array',
           'autograd', 'random', 'nd', 'parallel', 'init', 'initializer', 'layers', 'loss', 'metric',
           'optimizer', 'lr_scheduler', 'Trainer', 'utils', 'data', 'estimator', 'handlers',
           'context', 'gluon', 'test_utils', 'amp', 'contrib']
