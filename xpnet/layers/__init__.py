"""``xpnet.layers``: Gluon's ``nn`` (idiomatically ``from xpnet import layers as nn``).

Modules: ``block`` (Block, HybridBlock), ``parameter`` (Parameter, Constant), ``basic``
(containers, Dense, Dropout, Embedding...), ``activations``, ``normalization``, and the
convolution/pooling, spatial and recurrent families.
"""
from .block import Block, HybridBlock, ParameterFileError  # noqa: F401
from .parameter import (Parameter, Constant, ParameterDict,  # noqa: F401
                        DeferredInitializationError)
from .basic import (Sequential, HybridSequential, Dense, Dropout, Embedding,  # noqa: F401
                    Flatten, Lambda, HybridLambda, Identity, Concurrent, HybridConcurrent,
                    SparseEmbedding)
from .activations import Activation, LeakyReLU, PReLU, ELU, SELU, GELU, Swish  # noqa: F401
from .normalization import BatchNorm, LayerNorm, InstanceNorm, GroupNorm  # noqa: F401
from .sync_batchnorm import *  # noqa: F401,F403
from .conv import *  # noqa: F401,F403
from .pooling import *  # noqa: F401,F403
from .spatial import *  # noqa: F401,F403
from .deformable import *  # noqa: F401,F403
from . import rnn  # noqa: F401
