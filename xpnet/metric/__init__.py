"""Evaluation metrics with Gluon 1.9's names, defaults and numbers (``xpnet.metric``).

``update(labels, preds)`` takes one NDArray (or NumPy array), or a list of them (one per
device). Host predictions are accumulated with vectorized NumPy. Device predictions are
accumulated on their device without reading anything back (:class:`Accuracy`,
:class:`Loss`, :class:`CrossEntropy`, :class:`NegativeLogLikelihood`, :class:`Perplexity`:
one fused kernel per update; :class:`MAE`, :class:`MSE`, :class:`RMSE`: a few array
calls): ``get()`` reads the statistics back once, and a bad label found on the device
raises there. :class:`TopKAccuracy`, :class:`F1`, :class:`MCC`, :class:`PCC` and
:class:`PearsonCorrelation` bring the selected part of each prediction (e.g. the arg-max)
to the host at every update.

``get()`` returns ``(name, value)`` for the data since the last ``reset()`` or
``reset_local()``; ``get_global()`` for the data since the last ``reset()``. Before any
update the value is NaN. ``state_dict()`` / ``load_state_dict()`` give a JSON-serializable
snapshot of the accumulated statistics, for checkpoints. ``reduction_state()`` /
``merged(states)`` combine the statistics of several processes (distributed training):
``m.merged([a.reduction_state(), b.reduction_state()]).get()`` is the value over the data
of ``a`` and ``b``; :func:`mergeable` says whether a metric's ``get`` follows them.

Example::

    acc = metric.Accuracy()
    acc.update(labels=nd.array([0, 1, 1]), preds=nd.array([[.3, .7], [0, 1.], [.4, .6]]))
    acc.get()                      # ('accuracy', 0.6666666666666666)
    metric.create(['acc', 'f1']).get()

Differences from MXNet 1.9.1 (all where MXNet raises an unclear error or is inconsistent):
``TopKAccuracy`` also allows ``top_k=1`` and updates its global statistics in every case;
``PearsonCorrelation(average='micro')`` keeps separate local and global pooled statistics
(MXNet's ``get_global`` returns 0 there); every metric taking class indices (``Accuracy``,
``TopKAccuracy``, ``F1``, ``MCC``, ``PCC``, ``CrossEntropy``, ``NegativeLogLikelihood``,
``Perplexity``) raises ``ValueError`` for a label that is not a whole number in
``[0, classes)`` (negative, too large, fractional or NaN) instead of clipping, wrapping or
truncating it; ``Perplexity`` and the cross-entropies accept any prediction
``(..., classes)`` with a label per row.

Layout: ``base`` (EvalMetric, the registry, ``create``, CompositeEvalMetric),
``classification``, ``regression`` (with Pearson correlation), ``custom`` (Loss,
CustomMetric, ``np``); ``_inputs`` holds the input handling they share.
"""
from ._inputs import *  # noqa: F401,F403
from .base import *  # noqa: F401,F403
from .classification import *  # noqa: F401,F403
from .regression import *  # noqa: F401,F403
from .custom import *  # noqa: F401,F403
from .custom import np  # noqa: F401  (Gluon's metric.np; kept out of __all__)
from . import _inputs, base, classification, custom, regression

__all__ = (_inputs.__all__ + base.__all__ + classification.__all__ + regression.__all__ +
           custom.__all__)
