"""Optimizers with MXNet 1.9's update rules: SGD, NAG, Adam, AdamW, RMSProp, AdaGrad, AdaDelta,
and the rest of MXNet 1.9's registry: Signum, FTML, LARS, LBSGD, LAMB, DCASGD, SGLD, ccSGD,
Ftrl, Adamax, Nadam.

``create(name, **kwargs)`` builds one by its registered (lower-case) name; ``register``
adds a custom subclass of :class:`Optimizer`. Every update runs in place on the weight's
device; see :mod:`xpnet.optimizer.base` for the bookkeeping (learning rate, weight decay,
multipliers, update counts) shared by all of them.

Example::

    opt = xpnet.optimizer.create('adam', learning_rate=1e-3, wd=1e-4)
    trainer = xpnet.Trainer(net.collect_params(), opt)
"""
from .base import Optimizer, register, create
from .sgd import SGD, NAG, ccSGD, DCASGD, SGLD
from .adam import Adam, AdamW, Adamax, Nadam, FTML
from .adaptive import RMSProp, AdaGrad, AdaDelta, Ftrl
from .signum import Signum
from .large_batch import LARS, LAMB, LBSGD

__all__ = ['Optimizer', 'register', 'create', 'SGD', 'NAG', 'Adam', 'AdamW', 'RMSProp',
           'AdaGrad', 'AdaDelta', 'ccSGD', 'DCASGD', 'SGLD', 'Adamax', 'Nadam', 'FTML', 'Ftrl',
           'Signum', 'LARS', 'LAMB', 'LBSGD']
