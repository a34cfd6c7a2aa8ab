"""Optimizers with MXNet 1.9's update rules: SGD, NAG, Adam, AdamW, RMSProp, AdaGrad, AdaDelta.

``create(name, **kwargs)`` builds one by its registered (lower-case) name; ``register``
adds a custom subclass of :class:`Optimizer`. Every update runs in place on the weight's
device; see :mod:`xpnet.optimizer.base` for the bookkeeping (learning rate, weight decay,
multipliers, update counts) shared by all of them.

Example::

    opt = xpnet.optimizer.create('adam', learning_rate=1e-3, wd=1e-4)
    trainer = xpnet.Trainer(net.collect_params(), opt)
"""
from .base import Optimizer, register, create
from .sgd import SGD, NAG
from .adam import Adam, AdamW
from .adaptive import RMSProp, AdaGrad, AdaDelta

__all__ = ['Optimizer', 'register', 'create', 'SGD', 'NAG', 'Adam', 'AdamW', 'RMSProp',
           'AdaGrad', 'AdaDelta']
