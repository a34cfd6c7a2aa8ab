"""The metric base class, the name registry and :func:`create`, and
:class:`CompositeEvalMetric`."""
import json
from collections import OrderedDict

from ._inputs import _num

__all__ = ['EvalMetric', 'CompositeEvalMetric', 'create', 'register']


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
    if callable(metric):    # CustomMetric (metric/custom.py) registers itself below us
        return _REGISTRY['custommetric'](metric, *args, **kwargs)
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
