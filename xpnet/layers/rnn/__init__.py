"""``xpnet.layers.rnn``: Gluon's recurrent cells (``gluon.rnn`` and ``gluon.contrib.rnn``) and
the multi-step layers RNN, LSTM and GRU.

Modules: ``cells`` (base classes, RNN/LSTM/GRU cells), ``modifiers`` (Sequential,
Bidirectional, Dropout, Zoneout, Residual cells), ``contrib_cells`` (LSTMPCell,
VariationalDropoutCell), ``conv_cells`` (convolutional RNN/LSTM/GRU cells in 1-3 D) and
``layers`` (RNN, LSTM, GRU).

Example::

    from xpnet.layers import rnn
    layer = rnn.LSTM(200, num_layers=2)
    cell = rnn.Conv2DLSTMCell((8, 16, 16), 16, 3, 3, i2h_pad=1)
"""
from .cells import *  # noqa: F401,F403
from .modifiers import *  # noqa: F401,F403
from .contrib_cells import *  # noqa: F401,F403
from .conv_cells import *  # noqa: F401,F403
from .layers import *  # noqa: F401,F403
from . import cells, contrib_cells, conv_cells, layers, modifiers

__all__ = (cells.__all__ + modifiers.__all__ + contrib_cells.__all__ + conv_cells.__all__
           + layers.__all__)
