"""``xpnet.gluon``: MXNet Gluon 1.x's namespace over xpnet's modules.

With ``import xpnet as mx``, Gluon 1.x code written for ``mxnet.gluon`` runs unchanged:
every name here is the xpnet module or class itself (an alias, not a copy)::

    gluon.nn          -> xpnet.layers           gluon.rnn     -> xpnet.layers.rnn
    gluon.loss        -> xpnet.loss             gluon.data    -> xpnet.data (with vision)
    gluon.utils       -> xpnet.utils            gluon.Trainer -> xpnet.Trainer
    gluon.Block, HybridBlock, Parameter, Constant, ParameterDict -> xpnet.layers's
    gluon.contrib.nn / rnn / data / estimator -> xpnet.layers / layers.rnn / data / estimator
    gluon.model_zoo.vision                    -> xpnet.gluon.model_zoo.vision (loaded lazily)

There is no ``SymbolBlock`` (xpnet has no symbolic graphs). ``hybridize()`` is accepted and
runs imperatively. ``collect_params()`` keys are structural names (``features.0.weight``,
the names Gluon's ``save_parameters`` writes), not Gluon's prefixed names.

Example::

    import xpnet as mx
    from xpnet import gluon, autograd
    net = gluon.nn.HybridSequential()
    net.add(gluon.nn.Dense(10))
    net.initialize(mx.init.Xavier())
    trainer = gluon.Trainer(net.collect_params(), 'sgd', {'learning_rate': 0.1})
"""
import importlib

from .. import data, layers, loss, utils
from .. import trainer as _trainer_module
from ..layers import Block, Constant, HybridBlock, Parameter, ParameterDict, rnn
from ..layers import block as _block_module, parameter as _parameter_module
from ..trainer import Trainer
from ._alias import alias_module

nn = layers

for _alias, _module in (('nn', layers), ('rnn', rnn), ('loss', loss), ('data', data),
                        ('utils', utils), ('trainer', _trainer_module),
                        ('block', _block_module), ('parameter', _parameter_module)):
    alias_module(f'{__name__}.{_alias}', _module)

from . import contrib  # noqa: E402  (after the aliases it refers to)

__all__ = ['nn', 'rnn', 'loss', 'data', 'utils', 'contrib', 'model_zoo', 'Trainer', 'Block',
           'HybridBlock', 'Parameter', 'Constant', 'ParameterDict']


def __getattr__(name):
    # the model zoo (dozens of architectures) is imported at its first use only
    if name == 'model_zoo':
        return importlib.import_module('.model_zoo', __name__)
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
