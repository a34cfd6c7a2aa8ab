"""MetricHandler: update metrics with each batch's predictions and losses."""
from .._events import BatchEnd, EpochBegin

__all__ = ['MetricHandler']


def check_metric_list(metrics, owner):
    """None, or ``metrics`` (one EvalMetric or a list of them) as a list; ``ValueError``
    naming ``owner`` for anything else."""
    from .. import metric as _metric
    if metrics is None:
        return None
    items = metrics if isinstance(metrics, (list, tuple)) else [metrics]
    for m in items:
        if not isinstance(m, _metric.EvalMetric):
            raise ValueError(f'{owner}: metrics must be EvalMetrics (xpnet.metric), got '
                             f'{type(m).__name__}: {m!r}')
    return list(items)


class MetricHandler(EpochBegin, BatchEnd):
    """Resets ``metrics`` at each epoch begin and updates them at each batch end: an
    ``xpnet.metric.Loss`` with the batch's losses, every other metric with (label, pred).

    ``fit`` adds one for ``estimator.train_metrics`` and ``evaluate`` one for
    ``estimator.val_metrics`` unless you pass your own. Metrics given here count as
    updated by the estimator, so other handlers may log or monitor them.

    Args:
        metrics: an EvalMetric or a list of them.
        priority: runs before most handlers (-1000) so they see updated metrics.
    """

    def __init__(self, metrics, priority=-1000):
        self.metrics = check_metric_list(metrics, 'MetricHandler') or []
        self.priority = priority

    def epoch_begin(self, estimator, *args, **kwargs):
        for m in self.metrics:
            m.reset()

    def batch_end(self, estimator, *args, **kwargs):
        from .. import metric as _metric
        pred, label, loss = kwargs['pred'], kwargs['label'], kwargs['loss']
        for m in self.metrics:
            if isinstance(m, _metric.Loss):
                m.update(0, loss)
            else:
                m.update(label, pred)
