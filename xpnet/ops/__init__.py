"""Differentiable primitives over ``xp`` arrays. Each submodule groups one family:

- ``math``: elementwise arithmetic and functions
- ``reduce``: sums, means, extremes, arg-reductions
- ``shape``: reshape, transpose, concat/stack/split, broadcasting, padding
- ``index``: indexing, take, pick, one_hot, embedding lookup
- ``linalg``: dot, batch_dot, matmul, fully_connected
- ``activations``: softmax family, activation functions, dropout
- ``normalization``: batch/layer/instance/group normalization
- ``loss``: fused loss ops (softmax and sigmoid cross-entropy)
- ``conv``, ``pool``, ``deformable``: convolutions and pooling (``_im2col``: their windows)
- ``rnn``: fused recurrent sequences and cell steps
- ``creation``: zeros, ones, arange, ...

Layers compose these; ``xpnet.nd`` re-exports them under MXNet's names.
"""
import sys

from .activations import *  # noqa: F401,F403
from .conv import *  # noqa: F401,F403
from .creation import *  # noqa: F401,F403
from .index import *  # noqa: F401,F403
from .linalg import *  # noqa: F401,F403
from .loss import *  # noqa: F401,F403
from .math import *  # noqa: F401,F403
from .normalization import *  # noqa: F401,F403
from .reduce import *  # noqa: F401,F403
from .rnn import *  # noqa: F401,F403
from .shape import *  # noqa: F401,F403

from .. import ndarray as _ndarray

_ndarray._O = sys.modules[__name__]
