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
- ``ctc``: the connectionist temporal classification loss

Layers compose these; ``xpnet.nd`` re-exports them under MXNet's names. Every public op
seen from here runs under its data's device (``_base.on_device``); calls between ops inside
a module are already there. Ops with a mixed-precision policy (``_amp.POLICIES``) also cast
their inputs while ``xpnet.amp`` is on.
"""
import sys
import types

from .activations import *  # noqa: F401,F403
from .conv import *  # noqa: F401,F403
from .ctc import *  # noqa: F401,F403
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
from ._amp import POLICIES as _AMP_POLICIES, on_device_amp as _on_device_amp
from ._base import on_device as _on_device


def _place_ops_on_device(namespace):
    for name, fn in list(namespace.items()):
        if not name.startswith('_') and isinstance(fn, types.FunctionType) \
                and fn.__module__.startswith(__name__ + '.'):
            # ops with a mixed-precision policy also cast their inputs under xpnet.amp
            namespace[name] = _on_device_amp(fn, name) if name in _AMP_POLICIES \
                else _on_device(fn)


_place_ops_on_device(globals())
_ndarray._O = sys.modules[__name__]
