"""MetricHandler: reset at epoch begin, update with (label, pred) or the loss."""
import numpy as np
import pytest

import xpnet
from xpnet.handlers import EpochEnd, MetricHandler

from estimator_helpers import make_data, make_estimator, make_loader


def test_updates_accuracy_and_loss_metrics_per_epoch():
    x, y = make_data()
    seen = []

    class Snapshot(EpochEnd):
        def epoch_end(self, est, *args, **kwargs):
            seen.append({m.name: m.get()[1] for m in est.train_metrics})

    est = make_estimator(lr=0.0)          # frozen weights: each epoch sees the same numbers
    est.fit(make_loader(x, y), epochs=2, event_handlers=[Snapshot()])
    out = est.net(xpnet.array(x))
    acc = (out.asnumpy().argmax(1) == y).mean()
    loss = xpnet.loss.SoftmaxCrossEntropyLoss()(out, xpnet.array(y)).asnumpy().mean()
    for s in seen:     # reset between epochs: the second epoch does not accumulate the first
        assert s['training accuracy'] == pytest.approx(acc)
        assert s['training softmaxcrossentropyloss'] == pytest.approx(loss, rel=1e-5)


def test_user_metric_handler_and_priority():
    est = make_estimator()
    mse = xpnet.metric.MSE()
    handler = MetricHandler(est.train_metrics, priority=-50)
    assert MetricHandler([mse]).priority == -1000 and handler.priority == -50
    est.fit(make_loader(), batches=2, event_handlers=[handler])
    assert est.event_handlers.count(handler) == 1
    assert not np.isnan(est.train_metrics[0].get()[1])


def test_rejects_non_metrics():
    with pytest.raises(ValueError, match='MetricHandler: metrics must be EvalMetrics'):
        MetricHandler(['accuracy'])
