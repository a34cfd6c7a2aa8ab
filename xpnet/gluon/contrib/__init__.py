"""``xpnet.gluon.contrib``: Gluon 1.x's ``gluon.contrib`` names over xpnet's modules.

``contrib.nn`` is ``xpnet.layers`` (Concurrent, HybridConcurrent, Identity,
SparseEmbedding, SyncBatchNorm, PixelShuffle*, DeformableConvolution...), ``contrib.rnn``
is ``xpnet.layers.rnn`` (Conv*RNN/LSTM/GRU cells, LSTMPCell, VariationalDropoutCell),
``contrib.data`` is ``xpnet.data`` (IntervalSampler, ``text.WikiText2``...) and
``contrib.estimator`` is ``xpnet.estimator`` (Estimator, BatchProcessor, the event
handlers). They are the same module objects, not copies.
"""
from ... import data, estimator, layers
from ...layers import rnn
from .._alias import alias_module

nn = layers

for _alias, _module in (('nn', layers), ('rnn', rnn), ('data', data),
                        ('estimator', estimator)):
    alias_module(f'{__name__}.{_alias}', _module)

__all__ = ['nn', 'rnn', 'data', 'estimator']
