"""The monitored-metric logic shared by CheckpointHandler, EarlyStoppingHandler and
ReduceLROnPlateauHandler: mode min/max/auto, ``min_delta``, ``baseline``, the improvement
test and "is there a fresh value this epoch" (Keras' ``MonitorCallback``), written once.
"""
import math
import warnings

__all__ = ['Monitor', 'resolve_mode']

# Metric classes (by xpnet.metric name) whose value is better when larger / smaller.
_MAX_CLASSES = ('Accuracy', 'TopKAccuracy', 'F1', 'MCC', 'PearsonCorrelation')
_MIN_CLASSES = ('MAE', 'MSE', 'RMSE', 'CrossEntropy', 'NegativeLogLikelihood', 'Perplexity',
                'Loss')
# Fallback for other metrics (custom ones): words in the metric name.
_MAX_WORDS = ('acc', 'f1', 'mcc', 'auc', 'precision', 'recall', 'pearson', 'top_k')
_MIN_WORDS = ('loss', 'error', 'err', 'mse', 'mae', 'rmse', 'entropy', 'nll', 'perplexity')


def _metric_name(metric):
    name = metric.get()[0] if hasattr(metric, 'get') else getattr(metric, 'name', '')
    return name if isinstance(name, str) else getattr(metric, 'name', str(name))


def resolve_mode(metric, mode, owner):
    """'min' or 'max' for ``metric``; 'auto' decides from the metric's class, then its name,
    and raises ``ValueError`` when it cannot tell rather than guessing."""
    if mode in ('min', 'max'):
        return mode
    if mode != 'auto':
        raise ValueError(f"{owner}: mode must be 'auto', 'min' or 'max', got {mode!r}")
    from .. import metric as _metric
    for names, result in ((_MAX_CLASSES, 'max'), (_MIN_CLASSES, 'min')):
        classes = tuple(c for c in (getattr(_metric, n, None) for n in names)
                        if isinstance(c, type))
        # exact class: a user's subclass of Accuracy may measure something else
        if type(metric) in classes:
            return result
    name = _metric_name(metric).lower()
    for prefix in ('training ', 'validation '):
        if name.startswith(prefix):
            name = name[len(prefix):]
    is_max = any(w in name for w in _MAX_WORDS)
    is_min = any(w in name for w in _MIN_WORDS)
    if is_max != is_min:
        return 'max' if is_max else 'min'
    raise ValueError(
        f"{owner}: mode='auto' cannot tell whether {_metric_name(metric)!r} "
        f'({type(metric).__name__}) improves when it grows or when it shrinks; pass '
        "mode='max' or mode='min'")


class Monitor:
    """Tracks the best value of a metric.

    Args:
        metric: the EvalMetric to watch (a single metric, not a composite).
        mode: 'min', 'max' or 'auto' (see :func:`resolve_mode`).
        min_delta: how much better than the best a value must be to count as an
            improvement (its sign is ignored).
        baseline: a value to beat before anything counts as an improvement.
        owner: the handler's name, for error messages.
    """

    def __init__(self, metric, mode='auto', min_delta=0, baseline=None, owner='handler'):
        from .. import metric as _metric
        if not isinstance(metric, _metric.EvalMetric):
            raise ValueError(f'{owner}: monitor must be one of the estimator\'s metrics '
                             f'(estimator.train_metrics / val_metrics), got {metric!r}')
        composite = getattr(_metric, 'CompositeEvalMetric', None)
        if composite is not None and isinstance(metric, composite):
            raise ValueError(f'{owner}: monitor cannot be a CompositeEvalMetric; pass one of '
                             'its metrics')
        self.metric = metric
        self.mode = resolve_mode(metric, mode, owner)
        self.min_delta = abs(float(min_delta))
        self.baseline = None if baseline is None else float(baseline)
        self.reset()

    def reset(self):
        """Forget the best value (back to the baseline, or the worst possible value)."""
        if self.baseline is not None:
            self.best = self.baseline
        else:
            self.best = -math.inf if self.mode == 'max' else math.inf

    def current(self, estimator=None):
        """``(name, value)`` of the metric now (value is NaN before any update), read
        through ``estimator.metric_value`` when an estimator is given."""
        name, value = estimator.metric_value(self.metric) if estimator is not None \
            else self.metric.get()
        return name, float(value)

    def epoch_value(self, estimator, owner):
        """``(name, value)`` to judge at this epoch's end, or None when there is none: a
        validation metric in an epoch without validation, or a metric never updated (then
        with a warning naming it)."""
        if any(self.metric is m for m in estimator.val_metrics) and \
                not estimator.validated_this_epoch:
            return None
        name, value = self.current(estimator)
        if math.isnan(value):
            warnings.warn(f'{owner}: {name} has no value yet; make sure the monitor is one of '
                          'estimator.train_metrics / val_metrics and that it is updated before '
                          'the epoch ends', RuntimeWarning, stacklevel=3)
            return None
        return name, value

    def is_improvement(self, value):
        """True if ``value`` beats the best by more than ``min_delta``."""
        if self.mode == 'max':
            return value - self.min_delta > self.best
        return value + self.min_delta < self.best

    def state_dict(self):
        return {'best': self.best}

    def load_state_dict(self, state):
        self.best = float(state['best'])
