"""The metric base class, the name registry and :func:`create`, and
:class:`CompositeEvalMetric`."""
import copy
import json
from collections import OrderedDict

import numpy

from ..backend import is_array, to_host
from ..backend.checks import read_back
from ._inputs import _num

__all__ = ['EvalMetric', 'CompositeEvalMetric', 'create', 'register', 'mergeable']


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

def _statistic(name):
    """A host statistic (``sum_metric``, ...) that first takes in what the device
    accumulated (:meth:`EvalMetric._fold`); kept in the instance's ``__dict__`` under its
    own name, so ``vars(metric)`` lists it."""
    def get(self):
        self._fold()
        return self.__dict__.get(name, 0)

    def set(self, value):
        self._fold()
        self.__dict__[name] = value
    return property(get, set, doc=f'``{name}``, including what the device accumulated')


class EvalMetric:
    """Base class of evaluation metrics.

    Subclasses implement ``update(labels, preds)`` and accumulate ``sum_metric`` /
    ``num_inst`` (and their ``global_`` twins); ``get()`` returns their ratio.

    On a device, xpnet's metrics (Accuracy, Loss, CrossEntropy, NegativeLogLikelihood,
    Perplexity, MAE, MSE, RMSE) accumulate into a float64 vector on the device
    (``[sum, count, global sum, global count]``, :meth:`_add_device`), so an update
    synchronises nothing; reading any statistic (``get()``, ``sum_metric``, ...) brings it
    back once, with the pending device checks (bad labels raise there).

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

    sum_metric = _statistic('sum_metric')
    num_inst = _statistic('num_inst')
    global_sum_metric = _statistic('global_sum_metric')
    global_num_inst = _statistic('global_num_inst')

    def _accumulate(self, value, count):
        self.sum_metric += value
        self.global_sum_metric += value
        self.num_inst += count
        self.global_num_inst += count

    # ---- accumulation on a device --------------------------------------------------------
    def _device_accumulator(self, ctx):
        """The float64 ``[sum, count, global sum, global count]`` of ``ctx`` (zeros when
        new); call under ``ctx``'s device."""
        accs = self.__dict__.setdefault('_device_acc', {})
        acc = accs.get(ctx)
        if acc is None:
            acc = accs[ctx] = ctx.xp.zeros(4, dtype=numpy.float64)
        return acc

    def _add_device(self, ctx, value, count):
        """Add ``value`` (a device 0-d array or a number) and ``count`` to the local and
        global statistics, on the device (two kernels, no synchronisation)."""
        acc = self._device_accumulator(ctx)
        sums = acc[0::2]
        sums += value
        counts = acc[1::2]
        counts += count

    def _fold(self):
        """Bring the device accumulators into the host statistics (one read-back per
        device, which also raises the failed pending device checks)."""
        accs = self.__dict__.get('_device_acc')
        if not accs:
            return
        self.__dict__['_device_acc'] = {}
        d = self.__dict__
        for ctx, acc in accs.items():
            with ctx.use():
                v = read_back(acc)
            for i, key in enumerate(('sum_metric', 'num_inst', 'global_sum_metric',
                                     'global_num_inst')):
                value = float(v[i])
                if i % 2:
                    value = int(value) if value.is_integer() else value
                d[key] = d.get(key, 0) + value

    def __copy__(self):
        self._fold()
        out = object.__new__(type(self))
        out.__dict__.update(self.__dict__)
        out.__dict__['_device_acc'] = {}
        return out

    def reset(self):
        """Clear the local and the global statistics."""
        self.__dict__['_device_acc'] = {}
        self.num_inst = 0
        self.sum_metric = 0.0
        self.global_num_inst = 0
        self.global_sum_metric = 0.0

    def reset_local(self):
        """Clear the local statistics only (``get_global`` keeps counting)."""
        for ctx, acc in self.__dict__.get('_device_acc', {}).items():
            with ctx.use():
                local = acc[:2]
                local.fill(0)                # on the device: nothing read back
        self.__dict__['num_inst'] = 0
        self.__dict__['sum_metric'] = 0.0

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

    # ---- combining processes (distributed training) ------------------------------------
    def reduction_state(self):
        """The statistics behind :meth:`get` (since the last ``reset``/``reset_local``) as
        a flat float64 host vector; :meth:`merged` combines several processes' vectors.

        The base class's is ``[sum_metric, num_inst]``, which adds up across shards of
        the data. A metric whose ``get`` reads other statistics overrides both methods
        (see :func:`mergeable`).
        """
        return _host_vector([self.sum_metric, self.num_inst])

    def merged(self, states):
        """A copy of this metric holding the statistics of ``states`` (one
        :meth:`reduction_state` vector per process, in rank order) combined, as if it had
        seen every process's data: its ``get()`` is the value over all of them.

        Example::

            # acc_a and acc_b were updated on two halves of the data
            acc_a.merged([acc_a.reduction_state(), acc_b.reduction_state()]).get()
        """
        total = _sum_rows(states)
        out = copy.copy(self)
        out.sum_metric, out.num_inst = total[0], total[1]
        return out


def _host_vector(values):
    """``values`` (numbers, NumPy scalars or arrays of any device) as one flat float64 host
    vector."""
    parts = [numpy.asarray(to_host(v) if is_array(v) else v, dtype=numpy.float64).reshape(-1)
             for v in values]
    return numpy.concatenate(parts) if parts else numpy.zeros(0)


def _sum_rows(states):
    """The element-wise sum of equal-length vectors, added in the order given (so every
    process that sums the same list gets the same bits)."""
    total = numpy.array(states[0], dtype=numpy.float64, copy=True)
    for s in states[1:]:
        total += s
    return total


def mergeable(metric):
    """True if ``metric``'s :meth:`~EvalMetric.reduction_state` and
    :meth:`~EvalMetric.merged` describe its ``get()``: for xpnet's metrics and subclasses
    that keep xpnet's ``get``, and for metrics that define ``merged`` at or below the class
    that defines ``get``. A user's metric overriding ``get`` without ``merged`` is not: a
    distributed run then shows rank 0's value (with a warning naming the metric)."""
    if isinstance(metric, CompositeEvalMetric):
        return all(mergeable(m) for m in metric.metrics)
    kind = type(metric)

    def owner(name):
        return next(c for c in kind.__mro__ if name in vars(c))
    getter = owner('get')
    return getter.__module__.startswith('xpnet.metric') or issubclass(owner('merged'), getter)


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

    def reduction_state(self):
        """The children's vectors, each preceded by its length."""
        parts = [m.reduction_state() for m in self.metrics]
        return numpy.concatenate([[len(parts)], [len(p) for p in parts]] + parts)

    def merged(self, states):
        n = len(self.metrics)
        columns = [[] for _ in range(n)]
        for state in states:
            lengths = state[1:n + 1].astype(numpy.int64)
            offsets = numpy.concatenate([[0], numpy.cumsum(lengths)]) + n + 1
            for i in range(n):
                columns[i].append(state[offsets[i]:offsets[i + 1]])
        out = copy.copy(self)
        out.metrics = [m.merged(c) for m, c in zip(self.metrics, columns)]
        return out

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
