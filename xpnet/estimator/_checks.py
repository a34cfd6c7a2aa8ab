"""Argument checks of the Estimator: each turns a mistake a user can make into a
``ValueError`` that names the argument and says what to pass instead."""
import collections.abc
import copy
import numbers
import warnings

from ..backend import Context, cpu, gpu, is_array, num_gpus
from ..ndarray import NDArray

__all__ = ['check_count', 'check_loader', 'check_loss', 'check_metrics', 'default_metrics',
           'validation_metrics', 'check_context', 'initialize_net', 'check_trainer',
           'check_batch_processor', 'check_handler_metrics', 'check_amp']

TRAIN, VAL = 'training ', 'validation '


def check_count(value, argument):
    """None, or ``value`` as a positive int."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f'{argument} must be a positive integer, got {value!r}')
    if value <= 0:
        raise ValueError(f'{argument} must be a positive integer, got {value}')
    return int(value)


def _wrap_hint():
    return 'wrap arrays in a DataLoader, e.g. DataLoader(ArrayDataset(data, label), batch_size=32)'


def check_loader(data, argument):
    """Reject what cannot be a loader of (data, label) batches, naming the argument."""
    if isinstance(data, NDArray) or is_array(data):
        raise ValueError(
            f'{argument} must be a DataLoader (or another iterable of (data, label) batches), '
            f'got a bare {type(data).__name__} of shape {tuple(data.shape)}; {_wrap_hint()}')
    if isinstance(data, (str, bytes)) or not isinstance(data, collections.abc.Iterable):
        raise ValueError(f'{argument} must be a DataLoader (or another iterable of '
                         f'(data, label) batches), got {type(data).__name__} which is not '
                         'iterable')
    if isinstance(data, (list, tuple)) and data and not (
            isinstance(data[0], (list, tuple)) and len(data[0]) >= 2):
        first = data[0]
        what = f'{type(first).__name__}' + (f' of shape {tuple(first.shape)}'
                                            if hasattr(first, 'shape') else '')
        raise ValueError(
            f'{argument} must yield (data, label) pairs, but it is a {type(data).__name__} '
            f'whose first element is a {what} (a bare list of arrays?); {_wrap_hint()}')


def check_loss(loss, argument):
    from .. import loss as _loss
    base = getattr(_loss, 'Loss', None)
    if base is None or not isinstance(loss, base):
        raise ValueError(f'{argument} must be an xpnet.loss.Loss (e.g. '
                         f'SoftmaxCrossEntropyLoss()), got {type(loss).__name__}')
    return loss


def check_metrics(metrics, argument):
    """A flat list of EvalMetrics (names created, composites unpacked)."""
    from .. import metric as _metric
    if metrics is None:
        return []
    items = metrics if isinstance(metrics, (list, tuple)) else [metrics]
    out = []
    for m in items:
        if isinstance(m, str):
            m = _metric.create(m)
        composite = getattr(_metric, 'CompositeEvalMetric', None)
        if composite is not None and isinstance(m, composite):
            out.extend(check_metrics(list(m.metrics), argument))
        elif isinstance(m, _metric.EvalMetric):
            out.append(m)
        else:
            raise ValueError(f'{argument} must be an EvalMetric or a list of them '
                             f'(xpnet.metric), got {type(m).__name__}: {m!r}')
    return out


def default_metrics(train_metrics, loss):
    """The training metrics, named ``'training ...'``; Gluon's defaults (accuracy for
    ``SoftmaxCrossEntropyLoss``, and the mean loss) when none are given."""
    from .. import loss as _loss, metric as _metric
    if not train_metrics:
        sce = getattr(_loss, 'SoftmaxCrossEntropyLoss', None)
        if sce is not None and isinstance(loss, sce):
            train_metrics.append(_metric.Accuracy())
        loss_name = getattr(loss, 'name', None) or type(loss).__name__.lower()
        train_metrics.append(_metric.Loss(name=loss_name.rstrip('0123456789')))
    for m in train_metrics:
        if not m.name.startswith(TRAIN):
            m.name = TRAIN + m.name
    return train_metrics


def validation_metrics(val_metrics, train_metrics):
    """The validation metrics, named ``'validation ...'``; copies of the training metrics
    when none are given."""
    if not val_metrics:
        val_metrics = [copy.deepcopy(m) for m in train_metrics]
        for m in val_metrics:
            m.reset()
    for m in val_metrics:
        if any(m is t for t in train_metrics):
            raise ValueError(f'metric {m.name!r} is given both as a training and as a '
                             'validation metric; pass separate metric objects')
        if m.name.startswith(TRAIN):
            m.name = VAL + m.name[len(TRAIN):]
        elif not m.name.startswith(VAL):
            m.name = VAL + m.name
    return val_metrics


def check_context(context, net, ranks=1):
    """A list of Contexts: ``context``, else the net's, else gpu(0) when a GPU exists
    (this rank's device, ``dist.default_context()``, in a job of several ``ranks``)."""
    if context is None:
        for p in net.collect_params().values():
            try:
                return list(p.list_ctx())
            except RuntimeError:
                continue
        if ranks > 1:
            from .. import distributed as dist
            return [dist.default_context()]
        n = num_gpus()
        if n > 1:
            warnings.warn('You have several GPUs, gpu(0) is used by default; pass '
                          'context=[xpnet.gpu(0), xpnet.gpu(1), ...] to use them all.')
        return [gpu(0)] if n else [cpu()]
    if isinstance(context, Context):
        return [context]
    if isinstance(context, (list, tuple)) and context and \
            all(isinstance(c, Context) for c in context):
        return list(context)
    raise ValueError('context must be a Context or a non-empty list of them, e.g. '
                     f'xpnet.cpu() or [xpnet.gpu(0), xpnet.gpu(1)]; got {context!r}')


def _is_initialized(net):
    for p in net.collect_params().values():
        try:
            p.list_ctx()
        except RuntimeError:
            return False
    return True


def initialize_net(net, initializer, context):
    """Initialize ``net`` on ``context`` unless it already is (then warn if an initializer
    was given: it would be ignored). Returns True if it initialized."""
    if not _is_initialized(net):
        with warnings.catch_warnings():
            # a partly initialized net: the initialized parameters are kept as they are
            warnings.filterwarnings('ignore', message='.*already initialized.*')
            net.initialize(init=initializer, ctx=context)
        return True
    if initializer is not None:
        warnings.warn('Network already fully initialized, skipping initialization. You '
                      "don't need to pass an initializer if you already initialized your "
                      'net; use net.initialize(init=..., force_reinit=True) to '
                      're-initialize it.', stacklevel=4)
    return False


def check_trainer(trainer, net, ranks=1):
    """``trainer``, or Gluon's default (SGD, learning rate 0.001; across a job of several
    ``ranks`` with ``kvstore='dist_sync'``). Under MPI a trainer that does not reduce
    gradients across the ranks is refused: each rank would train a model of its own."""
    from ..trainer import Trainer
    if trainer is None:
        if ranks == 1 or _rank() == 0:
            warnings.warn('No trainer specified, default SGD optimizer with learning rate '
                          '0.001 is used.', stacklevel=4)
        return Trainer(net.collect_params(), 'sgd', {'learning_rate': 0.001},
                       kvstore='dist_sync' if ranks > 1 else 'device')
    if not isinstance(trainer, Trainer):
        raise ValueError(f'trainer must be an xpnet.Trainer, got {type(trainer).__name__}')
    # the Trainer's cross-rank reducer exists exactly when its kvstore is distributed
    if ranks > 1 and getattr(trainer, '_dist', None) is None:
        raise ValueError(
            f'this job runs {ranks} ranks (MPI), but the trainer does not reduce gradients '
            'across them, so every rank would train a model of its own: create it with '
            "xpnet.Trainer(params, optimizer, optimizer_params, kvstore='dist_sync')")
    return trainer


def _rank():
    from .. import distributed as dist
    return dist.rank()


def check_batch_processor(batch_processor):
    from .batch_processor import BatchProcessor
    if batch_processor is None:
        return BatchProcessor()
    if not callable(getattr(batch_processor, 'fit_batch', None)) or \
            not callable(getattr(batch_processor, 'evaluate_batch', None)):
        raise ValueError('batch_processor must have fit_batch() and evaluate_batch() '
                         f'methods, got {type(batch_processor).__name__}')
    return batch_processor


def check_handler_metrics(handlers, estimator):
    """Every metric a handler refers to (its ``monitor`` and ``metrics`` attributes) must be
    one the Estimator updates: a training or validation metric, or one of a MetricHandler
    in ``handlers``. A fresh ``Accuracy()`` would otherwise be logged as NaN for ever, so
    this raises ``ValueError`` as Gluon does."""
    from ..handlers import MetricHandler
    known = list(estimator.train_metrics) + list(estimator.val_metrics)
    for h in handlers:
        if isinstance(h, MetricHandler):
            known.extend(h.metrics)
    from ..metric import EvalMetric
    for h in handlers:
        refs = [('monitor', getattr(h, 'monitor', None))]
        metrics = getattr(h, 'metrics', None)
        if isinstance(metrics, EvalMetric):
            metrics = [metrics]
        if not isinstance(h, MetricHandler) and isinstance(metrics, (list, tuple)):
            refs += [('metrics', m) for m in metrics]
        for attribute, m in refs:
            if isinstance(m, EvalMetric) and not any(m is k for k in known):
                names = ', '.join(repr(k.name) for k in known)
                raise ValueError(
                    f'{type(h).__name__}: {attribute} {getattr(m, "name", m)!r} is not a '
                    'metric of this estimator, so nothing updates it; pass metrics from '
                    f'estimator.train_metrics or estimator.val_metrics ({names}), or add a '
                    'MetricHandler that updates it')


def check_amp(amp, trainer, contexts):
    """The AMP target type name for ``Estimator(amp=...)`` (None when off); attaches a loss
    scaler to ``trainer`` when on."""
    if amp is False or amp is None:
        return None
    name = 'float16' if amp is True else amp
    if name not in ('float16', 'bfloat16'):
        raise ValueError(f"amp must be False, True, 'float16' or 'bfloat16', got {amp!r}")
    from .. import amp as _amp
    for ctx in contexts:
        _amp._check_device_dtype(name, ctx)
    current = _amp.target_dtype()
    if current is not None and current.name != name:
        raise ValueError(f'Estimator(amp={amp!r}): AMP is already on in this process with '
                         f'target_dtype {current.name!r}')
    _amp._attach_scaler(trainer)
    return name
