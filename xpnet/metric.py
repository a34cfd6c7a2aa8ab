"""Evaluation metrics with Gluon 1.9's names, defaults and numbers (``xpnet.metric``).

Metrics run on the host, every batch: ``update(labels, preds)`` takes one NDArray (or
NumPy array), or a list of them (one per device), brings each to the host once and
accumulates with vectorized NumPy. Where only a small part of a prediction is needed
(the arg-max for :class:`Accuracy`, the label's probability for :class:`CrossEntropy`,
:class:`NegativeLogLikelihood` and :class:`Perplexity`) that part is selected on the
prediction's device first, so a large GPU array is not copied whole.

``get()`` returns ``(name, value)`` for the data since the last ``reset()`` or
``reset_local()``; ``get_global()`` for the data since the last ``reset()``. Before any
update the value is NaN. ``state_dict()`` / ``load_state_dict()`` give a JSON-serializable
snapshot of the accumulated statistics, for checkpoints.

Example::

    acc = metric.Accuracy()
    acc.update(labels=nd.array([0, 1, 1]), preds=nd.array([[.3, .7], [0, 1.], [.4, .6]]))
    acc.get()                      # ('accuracy', 0.6666666666666666)
    metric.create(['acc', 'f1']).get()

Differences from MXNet 1.9.1 (all where MXNet raises an unclear error or is inconsistent):
``TopKAccuracy`` also allows ``top_k=1`` and updates its global statistics in every case;
``PearsonCorrelation(average='micro')`` keeps separate local and global pooled statistics
(MXNet's ``get_global`` returns 0 there); ``CrossEntropy``/``NegativeLogLikelihood`` reject
labels outside ``[0, classes)`` instead of wrapping negative ones; ``Perplexity`` and the
cross-entropies accept any prediction ``(..., classes)`` with a label per row.
"""
import functools
import json
import math
import numbers
from collections import OrderedDict

import numpy

from .backend import context_of, get_array_module, is_array, run_on, to_device, to_host
from .ndarray import NDArray

__all__ = ['EvalMetric', 'CompositeEvalMetric', 'Accuracy', 'TopKAccuracy', 'F1', 'MCC',
           'Perplexity', 'MAE', 'MSE', 'RMSE', 'CrossEntropy', 'NegativeLogLikelihood',
           'PearsonCorrelation', 'PCC', 'Loss', 'CustomMetric', 'create', 'register',
           'check_label_shapes']


# ---- inputs ------------------------------------------------------------------------------------

def _as_list(x):
    if isinstance(x, (list, tuple)):
        return list(x)
    return [x]


def _pairs(labels, preds, name):
    """Lists of labels and predictions of equal length (one entry per device)."""
    labels, preds = _as_list(labels), _as_list(preds)
    if len(labels) != len(preds):
        raise ValueError(f'{name}: got {len(labels)} label array(s) but {len(preds)} '
                         'prediction array(s); pass one of each per device')
    return zip(labels, preds)


def _on_preds_device(update):
    """Run a metric's ``update(labels, preds)`` on its predictions' device (CuPy launches
    kernels on the thread's current device); pair by pair when they span several devices."""
    @functools.wraps(update)
    def placed(self, labels, preds):
        plist = preds if isinstance(preds, (list, tuple)) else [preds]
        ctxs = {c for c in map(_device_context, plist) if c is not None}
        if not ctxs:
            return update(self, labels, preds)
        llist = labels if isinstance(labels, (list, tuple)) else [labels] * len(plist)
        if len(ctxs) == 1 or len(llist) != len(plist):
            return run_on(next(iter(ctxs)), update, self, labels, preds)
        for label, pred in zip(llist, plist):
            ctx = _device_context(pred)
            if ctx is None:
                update(self, [label], [pred])
            else:
                run_on(ctx, update, self, [label], [pred])
    return placed


def _device_context(x):
    """The device (not CPU) context of an NDArray or device array, else None."""
    if isinstance(x, NDArray):
        return x._ctx if x._ctx.device_type != 'cpu' else None
    if is_array(x) and not isinstance(x, numpy.ndarray):
        return context_of(x)
    return None


def _device(x):
    """``(data, xp)``: the array and its array module, without copying."""
    if isinstance(x, NDArray):
        return x._data, x.xp
    if is_array(x):
        return x, get_array_module(x)
    return numpy.asarray(x), numpy


def _host(x):
    """A host ``numpy.ndarray`` view or copy of ``x``; never modify it in place."""
    if isinstance(x, NDArray):
        return to_host(x._data)
    if is_array(x):
        return to_host(x)
    return numpy.asarray(x)


def _like(x, data, xp):
    """``x`` on the device of ``data`` (array module ``xp``)."""
    d, xpx = _device(x)
    if xpx is xp:
        return d
    if xp is numpy:
        return to_host(d)
    return to_device(d, context_of(data))


def _rows(pred_data, xp, axis, name):
    """The prediction as ``(rows, classes)`` with the class axis last."""
    if pred_data.ndim == 0:
        raise ValueError(f'{name}: predictions need a class axis, got a scalar')
    axis = axis % pred_data.ndim
    if axis != pred_data.ndim - 1:
        pred_data = xp.moveaxis(pred_data, axis, -1)
    return pred_data.reshape(-1, pred_data.shape[-1])


def _pick_host(pred, label, axis, name, check_range=False):
    """The probability of each row's label, selected on the prediction's device.

    Returns ``(probs, label)`` as float64 / original-dtype host vectors, one entry per row.
    """
    pd, xp = _device(pred)
    p2 = _rows(pd, xp, axis, name)
    lab_full = _host(label)
    lab_host = lab_full.reshape(-1)
    m, c = p2.shape
    if lab_host.size != m:
        raise ValueError(f'{name}: label shape {tuple(lab_full.shape)} does not match '
                         f'prediction shape {tuple(pd.shape)}: expected {m} labels, one per '
                         f'row of {c} class scores')
    if xp is numpy:
        idx = lab_host.astype(numpy.int64)
    else:
        idx = _like(label, pd, xp).reshape(-1).astype(numpy.int64)
    if check_range and m:
        lo, hi = int(lab_host.min()), int(lab_host.max())
        if lo < 0 or hi >= c:
            raise ValueError(f'{name}: labels must be class indices in [0, {c}), got values '
                             f'in [{lo}, {hi}]')
    else:
        xp.maximum(idx, 0, out=idx)         # MXNet's pick clips out-of-range indices
        xp.minimum(idx, c - 1, out=idx)
    probs = p2[xp.arange(m), idx]
    return to_host(probs).astype(numpy.float64), lab_host


def check_label_shapes(labels, preds, wrap=False, shape=False):
    """Raise ``ValueError`` if the counts (or, with ``shape=True``, the shapes) differ.

    With ``wrap=True`` a single array is wrapped into a list. Returns ``(labels, preds)``.
    """
    if not shape:
        a, b = len(labels), len(preds)
    else:
        a, b = tuple(labels.shape), tuple(preds.shape)
    if a != b:
        raise ValueError(f'Shape of labels {a} does not match shape of predictions {b}')
    if wrap:
        labels, preds = _as_list(labels), _as_list(preds)
    return labels, preds


def _num(v):
    """A JSON-friendly Python number (NumPy scalars are converted)."""
    return v.item() if isinstance(v, numpy.generic) else v


# ---- registry ---------------------------------------------------------------------------------

_REGISTRY = {}


def register(klass, *aliases):
    """Register ``klass`` under its lower-cased class name (and ``aliases``) for :func:`create`."""
    for n in (klass.__name__,) + aliases:
        _REGISTRY[n.lower()] = klass
    return klass


def _alias(*names):
    def deco(klass):
        return register(klass, *names)
    return deco


def create(metric, *args, **kwargs):
    """Create a metric from a name, an instance, a class, a list of those, a config dict,
    or a function ``feval(label, pred)`` (wrapped in :class:`CustomMetric`).

    Names are Gluon's (case-insensitive): ``'acc'``/``'accuracy'``, ``'top_k_accuracy'``
    (``'top_k_acc'``), ``'f1'``, ``'mcc'``, ``'perplexity'``, ``'mae'``, ``'mse'``,
    ``'rmse'``, ``'ce'``/``'crossentropy'``, ``'nll_loss'``/``'negativeloglikelihood'``,
    ``'pearsonr'``/``'pearsoncorrelation'``, ``'pcc'``, ``'loss'``, ``'composite'``.
    ``args``/``kwargs`` go to the constructor.

    Example::

        create('top_k_accuracy', top_k=5).name      # 'top_k_accuracy_5'
        create(['acc', 'ce'])                        # CompositeEvalMetric
    """
    if isinstance(metric, EvalMetric):
        if args or kwargs:
            raise ValueError(f'create: {metric.name!r} is already a metric instance; '
                             'constructor arguments cannot be applied to it')
        return metric
    if isinstance(metric, type) and issubclass(metric, EvalMetric):
        return metric(*args, **kwargs)
    if isinstance(metric, (list, tuple)):
        composite = CompositeEvalMetric()
        for child in metric:
            composite.add(create(child, *args, **kwargs))
        return composite
    if isinstance(metric, dict):
        config = dict(metric)
        config.update(kwargs)
        return create(config.pop('metric'), *args, **config)
    if callable(metric):
        return CustomMetric(metric, *args, **kwargs)
    if not isinstance(metric, str):
        raise TypeError(f'create: expected a metric name, instance, list or function, got '
                        f'{type(metric).__name__}')
    if metric.startswith('[') or metric.startswith('{'):
        if args or kwargs:
            raise ValueError('create: a JSON config takes no extra arguments')
        value = json.loads(metric)
        if isinstance(value, list):
            return create(value[0], **value[1])
        return create(value)
    klass = _REGISTRY.get(metric.lower())
    if klass is None:
        raise ValueError(f'create: unknown metric {metric!r}; registered names: '
                         f'{", ".join(sorted(_REGISTRY))}')
    return klass(*args, **kwargs)


# ---- base ------------------------------------------------------------------------------------

class EvalMetric:
    """Base class of evaluation metrics.

    Subclasses implement ``update(labels, preds)`` and accumulate ``sum_metric`` /
    ``num_inst`` (and their ``global_`` twins); ``get()`` returns their ratio.

    Args:
        name: display name (settable later through ``.name``).
        output_names, label_names: names used by :meth:`update_dict` (None: all).
    """

    def __init__(self, name, output_names=None, label_names=None, **kwargs):
        self.name = str(name)
        self.output_names = output_names
        self.label_names = label_names
        self._has_global_stats = kwargs.pop('has_global_stats', False)
        self._kwargs = kwargs
        self.reset()

    def __str__(self):
        return f'EvalMetric: {dict(self.get_name_value())}'

    def __repr__(self):
        return f'{type(self).__name__}(name={self.name!r})'

    def get_config(self):
        """Constructor arguments; ``create(**config)`` rebuilds the metric."""
        config = self._kwargs.copy()
        config.update({'metric': type(self).__name__, 'name': self.name,
                       'output_names': self.output_names, 'label_names': self.label_names})
        return config

    def update_dict(self, label, pred):
        """Update with name -> array mappings, selected by ``label_names``/``output_names``."""
        if self.output_names is not None:
            pred = [pred[n] for n in self.output_names]
        else:
            pred = list(pred.values())
        if self.label_names is not None:
            label = [label[n] for n in self.label_names]
        else:
            label = list(label.values())
        self.update(label, pred)

    def update(self, labels, preds):
        """Accumulate one batch: ``labels`` and ``preds`` are arrays or lists of arrays."""
        raise NotImplementedError(f'{type(self).__name__} must implement update()')

    def _accumulate(self, value, count):
        self.sum_metric += value
        self.global_sum_metric += value
        self.num_inst += count
        self.global_num_inst += count

    def reset(self):
        """Clear the local and the global statistics."""
        self.num_inst = 0
        self.sum_metric = 0.0
        self.global_num_inst = 0
        self.global_sum_metric = 0.0

    def reset_local(self):
        """Clear the local statistics only (``get_global`` keeps counting)."""
        self.num_inst = 0
        self.sum_metric = 0.0

    def get(self):
        """``(name, value)`` since the last reset; NaN before any update."""
        if self.num_inst == 0:
            return self.name, float('nan')
        return self.name, float(self.sum_metric / self.num_inst)

    def get_global(self):
        """``(name, value)`` since the last :meth:`reset` (ignoring :meth:`reset_local`)."""
        if not self._has_global_stats:
            return self.get()
        if self.global_num_inst == 0:
            return self.name, float('nan')
        return self.name, float(self.global_sum_metric / self.global_num_inst)

    def get_name_value(self):
        """``[(name, value), ...]``."""
        return _zip_name_value(*self.get())

    def get_global_name_value(self):
        """``[(name, value), ...]`` of :meth:`get_global`."""
        return _zip_name_value(*self.get_global())

    # ---- checkpointing -------------------------------------------------------------------
    def state_dict(self):
        """The accumulated statistics as a JSON-serializable dict."""
        state = {'metric': type(self).__name__, 'name': self.name,
                 'sum_metric': _num(self.sum_metric), 'num_inst': _num(self.num_inst),
                 'global_sum_metric': _num(self.global_sum_metric),
                 'global_num_inst': _num(self.global_num_inst)}
        state.update(self._extra_state())
        return state

    def load_state_dict(self, state):
        """Restore statistics saved by :meth:`state_dict` (the name is not changed)."""
        kind = state.get('metric')
        if kind != type(self).__name__:
            raise ValueError(f'{type(self).__name__}.load_state_dict: the state belongs to a '
                             f'{kind} metric')
        missing = [k for k in ('sum_metric', 'num_inst', 'global_sum_metric',
                               'global_num_inst') if k not in state]
        if missing:
            raise ValueError(f'{type(self).__name__}.load_state_dict: missing {missing}')
        self.sum_metric = state['sum_metric']
        self.num_inst = state['num_inst']
        self.global_sum_metric = state['global_sum_metric']
        self.global_num_inst = state['global_num_inst']
        self._load_extra_state(state)

    def _extra_state(self):
        return {}

    def _load_extra_state(self, state):
        pass


def _zip_name_value(name, value):
    if not isinstance(name, list):
        name = [name]
    if not isinstance(value, list):
        value = [value]
    return list(zip(name, value))


@_alias('composite')
class CompositeEvalMetric(EvalMetric):
    """Several metrics updated together; ``get()`` returns ``([names], [values])``.

    Args:
        metrics: metrics, names or anything :func:`create` takes.
        name: display name.
    """

    def __init__(self, metrics=None, name='composite', output_names=None, label_names=None):
        self.metrics = []
        super().__init__(name, output_names=output_names, label_names=label_names,
                         has_global_stats=True)
        self.metrics = [create(m) for m in (metrics or [])]

    def add(self, metric):
        """Append a child metric (anything :func:`create` takes)."""
        self.metrics.append(create(metric))

    def get_metric(self, index):
        """The child metric at ``index``."""
        try:
            return self.metrics[index]
        except IndexError:
            raise ValueError(f'CompositeEvalMetric: metric index {index} is out of range '
                             f'0..{len(self.metrics) - 1}') from None

    def update_dict(self, labels, preds):
        if self.label_names is not None:
            labels = OrderedDict([i for i in labels.items() if i[0] in self.label_names])
        if self.output_names is not None:
            preds = OrderedDict([i for i in preds.items() if i[0] in self.output_names])
        for m in self.metrics:
            m.update_dict(labels, preds)

    def update(self, labels, preds):
        for m in self.metrics:
            m.update(labels, preds)

    def reset(self):
        for m in getattr(self, 'metrics', []):
            m.reset()

    def reset_local(self):
        for m in self.metrics:
            m.reset_local()

    def _collect(self, getter):
        names, values = [], []
        for m in self.metrics:
            name, value = getter(m)
            names.extend(name if isinstance(name, list) else [name])
            values.extend(value if isinstance(value, list) else [value])
        return names, values

    def get(self):
        return self._collect(lambda m: m.get())

    def get_global(self):
        return self._collect(lambda m: m.get_global())

    def get_config(self):
        config = super().get_config()
        config['metrics'] = [m.get_config() for m in self.metrics]
        return config

    def state_dict(self):
        return {'metric': type(self).__name__, 'name': self.name,
                'metrics': [m.state_dict() for m in self.metrics]}

    def load_state_dict(self, state):
        if state.get('metric') != type(self).__name__:
            raise ValueError(f'CompositeEvalMetric.load_state_dict: the state belongs to a '
                             f'{state.get("metric")} metric')
        children = state.get('metrics', [])
        if len(children) != len(self.metrics):
            raise ValueError(f'CompositeEvalMetric.load_state_dict: the state has '
                             f'{len(children)} metrics, this composite {len(self.metrics)}')
        for m, s in zip(self.metrics, children):
            m.load_state_dict(s)


# ---- classification ---------------------------------------------------------------------------

@_alias('acc')
class Accuracy(EvalMetric):
    """Fraction of predictions equal to the label.

    A prediction of another shape than its label is reduced by arg-max over ``axis``
    (class scores); one of the label's shape holds class indices.

    Args:
        axis: the class axis of the scores (default 1).
    """

    def __init__(self, axis=1, name='accuracy', output_names=None, label_names=None):
        super().__init__(name, axis=axis, output_names=output_names, label_names=label_names,
                         has_global_stats=True)
        self.axis = axis

    @_on_preds_device
    def update(self, labels, preds):
        for label, pred in _pairs(labels, preds, self.name):
            pd, xp = _device(pred)
            lab = _host(label)
            if tuple(pd.shape) != tuple(lab.shape) and pd.ndim > self.axis:
                pd = xp.argmax(pd, axis=self.axis)
            pred_label = to_host(pd).astype(numpy.int32, copy=False).reshape(-1)
            lab = lab.astype(numpy.int32, copy=False).reshape(-1)
            if pred_label.size != lab.size:
                raise ValueError(f'{self.name}: label shape {tuple(_host(label).shape)} does '
                                 f'not match prediction shape {tuple(_device(pred)[0].shape)}')
            self._accumulate(int(numpy.count_nonzero(pred_label == lab)), lab.size)


@_alias('top_k_accuracy', 'top_k_acc')
class TopKAccuracy(EvalMetric):
    """Fraction of samples whose label is among the ``top_k`` highest scores.

    Args:
        top_k: how many of the best classes count (the name gets ``_<top_k>``).
    """

    def __init__(self, top_k=1, name='top_k_accuracy', output_names=None, label_names=None):
        super().__init__(name, top_k=top_k, output_names=output_names, label_names=label_names,
                         has_global_stats=True)
        if not isinstance(top_k, numbers.Integral) or top_k < 1:
            raise ValueError(f'TopKAccuracy: top_k must be a positive integer, got {top_k!r}')
        self.top_k = int(top_k)
        self.name += f'_{self.top_k}'

    def get_config(self):
        config = super().get_config()
        suffix = f'_{self.top_k}'
        if config['name'].endswith(suffix):     # the constructor appends it again
            config['name'] = config['name'][:-len(suffix)]
        return config

    @_on_preds_device
    def update(self, labels, preds):
        for label, pred in _pairs(labels, preds, self.name):
            p = _host(pred)
            lab = _host(label).astype(numpy.int64, copy=False).reshape(-1)
            if p.ndim > 2:
                raise ValueError(f'{self.name}: predictions must be (batch, classes) scores, '
                                 f'got shape {p.shape}')
            if p.shape[0] != lab.size:
                raise ValueError(f'{self.name}: label shape {tuple(_host(label).shape)} does '
                                 f'not match prediction shape {p.shape}')
            if p.ndim == 1:          # already class indices
                correct = numpy.count_nonzero(p.astype(numpy.int64) == lab)
            else:
                k = min(self.top_k, p.shape[1])
                top = numpy.argpartition(p.astype(numpy.float32, copy=False), -k,
                                         axis=1)[:, -k:]
                correct = numpy.count_nonzero((top == lab[:, None]).any(axis=1))
            self._accumulate(int(correct), lab.size)


class _BinaryStats:
    """True/false positive/negative counts, local and global, for F1 and MCC."""
    FIELDS = ('tp', 'fp', 'fn', 'tn')

    def __init__(self):
        self.reset()

    def reset(self):
        self.local = dict.fromkeys(self.FIELDS, 0)
        self.glob = dict.fromkeys(self.FIELDS, 0)

    def reset_local(self):
        self.local = dict.fromkeys(self.FIELDS, 0)

    def update(self, label, pred, name):
        pd, xp = _device(pred)
        if pd.ndim != 2:
            raise ValueError(f'{name}: predictions must be (batch, classes) scores, got shape '
                             f'{tuple(pd.shape)}')
        pred_label = to_host(xp.argmax(pd, axis=1))
        lab = _host(label).astype(numpy.int32, copy=False).reshape(-1)
        if lab.size != pred_label.size:
            raise ValueError(f'{name}: label shape {tuple(_host(label).shape)} does not match '
                             f'prediction shape {tuple(pd.shape)}')
        if lab.size and (lab.min() < 0 or lab.max() > 1) and numpy.unique(lab).size > 2:
            raise ValueError(f'{name} currently only supports binary classification '
                             f'(labels {numpy.unique(lab)[:5].tolist()}...)')
        pt, lt = pred_label == 1, lab == 1
        counts = {'tp': int(numpy.count_nonzero(pt & lt)),
                  'fp': int(numpy.count_nonzero(pt & ~lt)),
                  'fn': int(numpy.count_nonzero(~pt & lt)),
                  'tn': int(numpy.count_nonzero(~pt & ~lt))}
        for k, v in counts.items():
            self.local[k] += v
            self.glob[k] += v

    @staticmethod
    def total(c):
        return c['tp'] + c['fp'] + c['fn'] + c['tn']

    @staticmethod
    def fscore(c):
        tp, fp, fn = c['tp'], c['fp'], c['fn']
        precision = tp / (tp + fp) if tp + fp > 0 else 0.
        recall = tp / (tp + fn) if tp + fn > 0 else 0.
        if precision + recall > 0:
            return 2 * precision * recall / (precision + recall)
        return 0.

    @staticmethod
    def mcc(c):
        if not _BinaryStats.total(c):
            return 0.
        tp, fp, fn, tn = (float(c[k]) for k in ('tp', 'fp', 'fn', 'tn'))
        denom = 1.
        for t in (tp + fp, tp + fn, tn + fp, tn + fn):
            if t != 0.:      # zero factors are left out (MXNet's convention)
                denom *= t
        return (tp * tn - fp * fn) / math.sqrt(denom)

    def state(self):
        return {'local': dict(self.local), 'global': dict(self.glob)}

    def load(self, state):
        self.local = {k: int(state['local'][k]) for k in self.FIELDS}
        self.glob = {k: int(state['global'][k]) for k in self.FIELDS}


class _BinaryMetric(EvalMetric):
    """F1/MCC: ``average='macro'`` averages the per-update scores, ``'micro'`` computes one
    score from the counts of every update."""
    _score = None

    def __init__(self, name, output_names, label_names, average):
        if average not in ('macro', 'micro'):
            raise ValueError(f"{type(self).__name__}: average must be 'macro' or 'micro', got "
                             f'{average!r}')
        self.average = average
        self._stats = _BinaryStats()
        super().__init__(name, output_names=output_names, label_names=label_names,
                         has_global_stats=True, average=average)

    @_on_preds_device
    def update(self, labels, preds):
        for label, pred in _pairs(labels, preds, self.name):
            self._stats.update(label, pred, self.name)
        score, st = type(self)._score, self._stats
        if self.average == 'macro':
            self._accumulate(score(st.local), 1)
            st.reset()
        else:
            self.sum_metric = score(st.local) * st.total(st.local)
            self.num_inst = st.total(st.local)
            self.global_sum_metric = score(st.glob) * st.total(st.glob)
            self.global_num_inst = st.total(st.glob)

    def reset(self):
        super().reset()
        self._stats.reset()

    def reset_local(self):
        super().reset_local()
        self._stats.reset_local()

    def _extra_state(self):
        return {'counts': self._stats.state()}

    def _load_extra_state(self, state):
        if 'counts' in state:
            self._stats.load(state['counts'])


@register
class F1(_BinaryMetric):
    """F1 score of a binary classification: ``2 * precision * recall / (precision + recall)``.

    Predictions are ``(batch, 2)`` scores (arg-max gives the class), labels 0/1.

    Args:
        average: ``'macro'`` (mean of the per-update F1, default) or ``'micro'``.
    """
    _score = staticmethod(_BinaryStats.fscore)

    def __init__(self, name='f1', output_names=None, label_names=None, average='macro'):
        super().__init__(name, output_names, label_names, average)


@register
class MCC(_BinaryMetric):
    """Matthews correlation coefficient of a binary classification
    (zero factors of the denominator are replaced by 1).

    Args:
        average: ``'macro'`` (default) or ``'micro'``, as for :class:`F1`.
    """
    _score = staticmethod(_BinaryStats.mcc)

    def __init__(self, name='mcc', output_names=None, label_names=None, average='macro'):
        super().__init__(name, output_names, label_names, average)


@register
class PCC(EvalMetric):
    """Multiclass Matthews correlation (Pearson correlation of the confusion matrix)."""

    def __init__(self, name='pcc', output_names=None, label_names=None,
                 has_global_stats=True):
        self.k = 2
        self.lcm = numpy.zeros((2, 2))
        self.gcm = numpy.zeros((2, 2))
        super().__init__(name, output_names=output_names, label_names=label_names,
                         has_global_stats=has_global_stats)

    def _grow(self, k):
        pad = ((0, k - self.k), (0, k - self.k))
        self.lcm = numpy.pad(self.lcm, pad)
        self.gcm = numpy.pad(self.gcm, pad)
        self.k = k

    @staticmethod
    def _calc(cmat):
        n = cmat.sum()
        x, y = cmat.sum(axis=1), cmat.sum(axis=0)
        cov_xx = numpy.sum(x * (n - x))
        cov_yy = numpy.sum(y * (n - y))
        if cov_xx == 0 or cov_yy == 0:
            return float('nan')
        cov_xy = numpy.sum(cmat.diagonal() * n - x * y)
        return float(cov_xy / (cov_xx * cov_yy) ** 0.5)

    @_on_preds_device
    def update(self, labels, preds):
        for label, pred in _pairs(labels, preds, self.name):
            lab = _host(label).astype(numpy.int64, copy=False).reshape(-1)
            pd, xp = _device(pred)
            if tuple(pd.shape) != tuple(_host(label).shape):
                pd = xp.argmax(pd, axis=1)
            p = to_host(pd).astype(numpy.int64, copy=False).reshape(-1)
            if p.size != lab.size:
                raise ValueError(f'{self.name}: label shape {tuple(_host(label).shape)} does '
                                 f'not match prediction shape {tuple(_device(pred)[0].shape)}')
            n = int(max(p.max(initial=0), lab.max(initial=0))) + 1
            if n > self.k:
                self._grow(n)
            bcm = numpy.bincount(p * self.k + lab, minlength=self.k * self.k)
            bcm = bcm.reshape(self.k, self.k)
            self.lcm += bcm
            self.gcm += bcm
        self.num_inst += 1
        self.global_num_inst += 1

    def reset(self):
        self.global_num_inst = 0
        self.global_sum_metric = 0.0
        self.gcm = numpy.zeros((self.k, self.k))
        self.reset_local()

    def reset_local(self):
        self.num_inst = 0
        self.sum_metric = 0.0
        self.lcm = numpy.zeros((self.k, self.k))

    def get(self):
        if self.num_inst == 0:
            return self.name, float('nan')
        return self.name, self._calc(self.lcm)

    def get_global(self):
        if self.global_num_inst == 0:
            return self.name, float('nan')
        return self.name, self._calc(self.gcm)

    def _extra_state(self):
        return {'lcm': self.lcm.tolist(), 'gcm': self.gcm.tolist()}

    def _load_extra_state(self, state):
        self.lcm = numpy.array(state['lcm'], dtype=numpy.float64)
        self.gcm = numpy.array(state['gcm'], dtype=numpy.float64)
        self.k = self.lcm.shape[0]


@register
class Perplexity(EvalMetric):
    """Perplexity ``exp(-mean(log p(label)))`` of predicted probabilities.

    Args:
        ignore_label: label value whose positions are not counted (None: count all).
        axis: the class axis of the predictions (default -1).

    Example::

        ppl = Perplexity(ignore_label=None)
        ppl.update(nd.array([0, 1, 1]), nd.array([[.3, .7], [0, 1.], [.4, .6]]))
        ppl.get()      # ('perplexity', 1.7710976...)
    """

    def __init__(self, ignore_label, axis=-1, name='perplexity', output_names=None,
                 label_names=None):
        super().__init__(name, ignore_label=ignore_label, axis=axis, output_names=output_names,
                         label_names=label_names, has_global_stats=True)
        self.ignore_label = ignore_label
        self.axis = axis

    @_on_preds_device
    def update(self, labels, preds):
        loss, num = 0.0, 0
        for label, pred in _pairs(labels, preds, self.name):
            probs, lab = _pick_host(pred, label, self.axis, self.name)
            if self.ignore_label is not None:
                keep = lab != self.ignore_label
                probs = probs[keep]
            loss -= float(numpy.log(numpy.maximum(1e-10, probs)).sum())
            num += probs.size
        self._accumulate(loss, num)

    def get(self):
        if self.num_inst == 0:
            return self.name, float('nan')
        return self.name, math.exp(self.sum_metric / self.num_inst)

    def get_global(self):
        if self.global_num_inst == 0:
            return self.name, float('nan')
        return self.name, math.exp(self.global_sum_metric / self.global_num_inst)


# ---- regression ---------------------------------------------------------------------------------

def _regression_pair(label, pred, name):
    lab = _host(label)
    p = _host(pred)
    if lab.ndim == 1:
        lab = lab.reshape(-1, 1)
    if p.ndim == 1:
        p = p.reshape(-1, 1)
    if lab.shape[:1] != p.shape[:1]:
        raise ValueError(f'{name}: label shape {tuple(_host(label).shape)} does not match '
                         f'prediction shape {tuple(_host(pred).shape)} (different batch sizes)')
    try:
        return lab.astype(numpy.float64) - p.astype(numpy.float64)
    except ValueError:
        raise ValueError(f'{name}: label shape {tuple(_host(label).shape)} does not broadcast '
                         f'with prediction shape {tuple(_host(pred).shape)}') from None


@register
class MAE(EvalMetric):
    """Mean absolute error, averaged over the updates (each batch counts once)."""

    def __init__(self, name='mae', output_names=None, label_names=None):
        super().__init__(name, output_names=output_names, label_names=label_names,
                         has_global_stats=True)

    @_on_preds_device
    def update(self, labels, preds):
        for label, pred in _pairs(labels, preds, self.name):
            d = _regression_pair(label, pred, self.name)
            self._accumulate(float(numpy.abs(d).mean()), 1)


@register
class MSE(EvalMetric):
    """Mean squared error, averaged over the updates (each batch counts once)."""

    def __init__(self, name='mse', output_names=None, label_names=None):
        super().__init__(name, output_names=output_names, label_names=label_names,
                         has_global_stats=True)

    @_on_preds_device
    def update(self, labels, preds):
        for label, pred in _pairs(labels, preds, self.name):
            d = _regression_pair(label, pred, self.name)
            self._accumulate(float(numpy.square(d).mean()), 1)


@register
class RMSE(EvalMetric):
    """Root mean squared error of each batch, averaged over the updates."""

    def __init__(self, name='rmse', output_names=None, label_names=None):
        super().__init__(name, output_names=output_names, label_names=label_names,
                         has_global_stats=True)

    @_on_preds_device
    def update(self, labels, preds):
        for label, pred in _pairs(labels, preds, self.name):
            d = _regression_pair(label, pred, self.name)
            self._accumulate(math.sqrt(float(numpy.square(d).mean())), 1)


@_alias('ce')
class CrossEntropy(EvalMetric):
    """Cross-entropy ``-log(p[label] + eps)`` of predicted probabilities, per sample.

    Args:
        eps: added to the probability before the log (default 1e-12).
    """

    def __init__(self, eps=1e-12, name='cross-entropy', output_names=None, label_names=None):
        super().__init__(name, eps=eps, output_names=output_names, label_names=label_names,
                         has_global_stats=True)
        self.eps = eps

    @_on_preds_device
    def update(self, labels, preds):
        for label, pred in _pairs(labels, preds, self.name):
            probs, _ = _pick_host(pred, label, -1, self.name, check_range=True)
            self._accumulate(float(-numpy.log(probs + self.eps).sum()), probs.size)


@_alias('nll_loss')
class NegativeLogLikelihood(CrossEntropy):
    """Negative log-likelihood ``-log(p[label] + eps)`` per sample (same numbers as
    :class:`CrossEntropy`, Gluon's name ``'nll-loss'``)."""

    def __init__(self, eps=1e-12, name='nll-loss', output_names=None, label_names=None):
        super().__init__(eps=eps, name=name, output_names=output_names,
                         label_names=label_names)


@_alias('pearsonr')
class PearsonCorrelation(EvalMetric):
    """Pearson correlation between labels and predictions.

    Args:
        average: ``'macro'`` (default: mean of the per-batch correlations) or ``'micro'``
            (one correlation of all the data, accumulated exactly batch by batch).
    """

    def __init__(self, name='pearsonr', output_names=None, label_names=None, average='macro'):
        if average not in ('macro', 'micro'):
            raise ValueError(f"PearsonCorrelation: average must be 'macro' or 'micro', got "
                             f'{average!r}')
        self.average = average
        super().__init__(name, output_names=output_names, label_names=label_names,
                         has_global_stats=True, average=average)

    _ZERO = (0, 0.0, 0.0, 0.0, 0.0, 0.0)      # n, mean_l, mean_p, m2_l, m2_p, c

    def reset(self):
        super().reset()
        self._local = self._glob = self._ZERO

    def reset_local(self):
        super().reset_local()
        self._local = self._ZERO

    @staticmethod
    def _merge(s, lab, p):
        """Combine pooled statistics with one batch (Chan et al.'s parallel update)."""
        n, ml, mp, m2l, m2p, c = s
        nb = lab.size
        mlb, mpb = lab.mean(), p.mean()
        dl, dp = lab - mlb, p - mpb
        tot = n + nb
        f = n * nb / tot
        el, ep = mlb - ml, mpb - mp
        return (tot, ml + el * nb / tot, mp + ep * nb / tot,
                m2l + float(dl @ dl) + el * el * f, m2p + float(dp @ dp) + ep * ep * f,
                c + float(dl @ dp) + el * ep * f)

    @staticmethod
    def _pooled(s):
        n, _, _, m2l, m2p, c = s
        denom = math.sqrt(m2l * m2p)
        return c / denom if n > 1 and denom > 0 else float('nan')

    @_on_preds_device
    def update(self, labels, preds):
        for label, pred in _pairs(labels, preds, self.name):
            lab, p = _host(label), _host(pred)
            if lab.shape != p.shape:
                raise ValueError(f'{self.name}: label shape {lab.shape} does not match '
                                 f'prediction shape {p.shape}')
            lab = lab.ravel().astype(numpy.float64)
            p = p.ravel().astype(numpy.float64)
            if self.average == 'macro':
                dl, dp = lab - lab.mean(), p - p.mean()
                denom = math.sqrt(float(dl @ dl) * float(dp @ dp))
                self._accumulate(float(dl @ dp) / denom if denom > 0 else float('nan'), 1)
            else:
                self.num_inst += 1
                self.global_num_inst += 1
                self._local = self._merge(self._local, lab, p)
                self._glob = self._merge(self._glob, lab, p)

    def get(self):
        if self.average == 'macro' or self.num_inst == 0:
            return super().get()
        return self.name, self._pooled(self._local)

    def get_global(self):
        if self.average == 'macro' or self.global_num_inst == 0:
            return super().get_global()
        return self.name, self._pooled(self._glob)

    def _extra_state(self):
        return {'pooled_local': list(self._local), 'pooled_global': list(self._glob)}

    def _load_extra_state(self, state):
        if 'pooled_local' in state:
            self._local = tuple(state['pooled_local'])
            self._glob = tuple(state['pooled_global'])


# ---- losses and custom functions ------------------------------------------------------------

@register
class Loss(EvalMetric):
    """Average of loss values: ``update(_, losses)`` ignores the labels.

    Example::

        m = Loss()
        m.update(0, [loss_fn(net(x), y)])       # one array per device
        m.get()                                 # ('loss', mean of all loss values)
    """

    def __init__(self, name='loss', output_names=None, label_names=None):
        super().__init__(name, output_names=output_names, label_names=label_names,
                         has_global_stats=True)

    @_on_preds_device
    def update(self, _, preds):
        for pred in _as_list(preds):
            if isinstance(pred, NDArray):
                total, size = float(pred.xp.sum(pred._data)), pred.size
            elif is_array(pred):
                total, size = float(get_array_module(pred).sum(pred)), pred.size
            else:
                arr = numpy.asarray(pred, dtype=numpy.float64)
                total, size = float(arr.sum()), arr.size
            self._accumulate(total, size)


@register
class CustomMetric(EvalMetric):
    """A metric from ``feval(label, pred)`` on host NumPy arrays, returning either a value
    (averaged over calls) or ``(sum_metric, num_inst)``.

    Args:
        feval: the function.
        name: display name (default: the function's name, ``custom(<lambda>)`` for lambdas).
        allow_extra_outputs: allow more predictions than labels (extra ones are ignored).
    """

    def __init__(self, feval, name=None, allow_extra_outputs=False, output_names=None,
                 label_names=None):
        if name is None:
            name = getattr(feval, '__name__', 'custom')
            if '<' in name:
                name = f'custom({name})'
        super().__init__(name, feval=feval, allow_extra_outputs=allow_extra_outputs,
                         output_names=output_names, label_names=label_names,
                         has_global_stats=True)
        self._feval = feval
        self._allow_extra_outputs = allow_extra_outputs

    def update(self, labels, preds):
        labels, preds = _as_list(labels), _as_list(preds)
        if not self._allow_extra_outputs and len(labels) != len(preds):
            raise ValueError(f'{self.name}: got {len(labels)} label array(s) but {len(preds)} '
                             'prediction array(s)')
        for label, pred in zip(labels, preds):
            r = self._feval(_host(label), _host(pred))
            if isinstance(r, tuple):
                self._accumulate(r[0], r[1])
            else:
                self._accumulate(r, 1)

    def get_config(self):
        raise NotImplementedError('CustomMetric cannot be serialized')


def np(numpy_feval, name=None, allow_extra_outputs=False):
    """A :class:`CustomMetric` from a function of host NumPy arrays (Gluon's ``metric.np``).

    Not in ``__all__``, so that ``from xpnet.metric import *`` cannot shadow NumPy's ``np``.
    """
    def feval(label, pred):
        return numpy_feval(label, pred)
    feval.__name__ = numpy_feval.__name__
    return CustomMetric(feval, name, allow_extra_outputs)

