"""Custom metrics as Gluon code writes them (subclass EvalMetric, override update/get/reset
without calling the base class) work with every handler, checkpoints and resume included;
handlers given metrics the estimator does not update are refused, as in Gluon."""
import warnings

import numpy as np
import pytest

import xpnet
from xpnet.handlers import (BatchEnd, CheckpointHandler, CSVLoggerHandler,
                            EarlyStoppingHandler, LoggingHandler, MetricHandler,
                            ReduceLROnPlateauHandler, TensorBoardHandler)

from estimator_helpers import make_data, make_estimator, make_loader, params_of


class GluonAccuracy(xpnet.metric.EvalMetric):
    """Counts in attributes of its own; the base class's counters never exist."""

    def __init__(self, name='myacc'):
        super().__init__(name)

    def reset(self):
        self.correct, self.total = 0, 0

    def update(self, labels, preds):
        for l, p in zip(labels, preds):
            self.correct += int((p.asnumpy().argmax(axis=1) == l.asnumpy()).sum())
            self.total += l.shape[0]

    def get(self):
        return self.name, self.correct / self.total if self.total else float('nan')


def _estimator(**kwargs):
    return make_estimator(dropout=0.3, optimizer='adam', lr=0.02,
                          train_metrics=[GluonAccuracy()], **kwargs)


@pytest.mark.filterwarnings('ignore:CheckpointHandler. skipping the best')    # before validation
def test_every_handler_works_with_a_gluon_style_metric(tmp_path, capsys):
    est = _estimator(quiet=False)
    val_acc = est.val_metrics[0]
    assert type(val_acc) is GluonAccuracy and val_acc.name == 'validation myacc'
    est.fit(make_loader(), val_data=make_loader(), epochs=3, event_handlers=[
        LoggingHandler(log_interval=2),
        CheckpointHandler(str(tmp_path / 'ckpt'), monitor=val_acc, save_best=True,
                          batch_period=2),
        EarlyStoppingHandler(val_acc, patience=5),
        ReduceLROnPlateauHandler(val_acc, patience=1),
        TensorBoardHandler(str(tmp_path / 'tb'), batch_period=2),
        CSVLoggerHandler(str(tmp_path / 'log.csv'))])
    assert 'training myacc: ' in capsys.readouterr().out
    assert len(est.history['validation myacc']) == 3
    assert 'validation myacc' in (tmp_path / 'log.csv').read_text().splitlines()[0]


class _Crash(BatchEnd):
    priority = 100

    def batch_end(self, est, *args, **kwargs):
        if est.progress.batches == 5:
            raise KeyboardInterrupt


def test_checkpoints_keep_its_counters_and_resume_is_exact(tmp_path):
    x, y = make_data(n=64, seed=3)

    def run(handlers, seed=0):
        xpnet.random.seed(seed)
        est = _estimator()
        est.fit(make_loader(x, y, shuffle=True), epochs=2, event_handlers=handlers)
        return est

    ref = run([])
    with pytest.raises(KeyboardInterrupt):
        run([CheckpointHandler(str(tmp_path), epoch_period=None, batch_period=3), _Crash()])
    handler = CheckpointHandler(str(tmp_path), epoch_period=None, batch_period=3,
                                resume_from_checkpoint=True)
    est = run([handler], seed=9)
    assert handler.resumed_from == 'model-epoch0batch3'        # mid-epoch: counters matter
    saved = handler.read('model-epoch0batch3')[0]['training']['train_metrics'][0]
    assert saved['kind'] == 'attributes' and saved['state']['total'] == 48
    assert est.history['training myacc'] == ref.history['training myacc']
    for k, v in params_of(est.net).items():
        np.testing.assert_array_equal(v, params_of(ref.net)[k])


def test_a_metric_that_cannot_be_saved_is_skipped_with_a_warning(tmp_path, capsys):
    class Holding(GluonAccuracy):
        def reset(self):
            super().reset()
            self.seen = object()           # not something a checkpoint can hold

    est = make_estimator(train_metrics=[Holding('holding')], quiet=False)
    est.fit(make_loader(), epochs=1, event_handlers=[CheckpointHandler(str(tmp_path))])
    out = capsys.readouterr().out
    assert "metric 'training holding' (Holding): its attribute 'seen' (a object) cannot be " \
           'saved in a checkpoint' in out
    assert (tmp_path / 'model-epoch0batch3.progress').exists()


@pytest.mark.parametrize('make_handler', [
    lambda: LoggingHandler(metrics=[xpnet.metric.Accuracy()]),
    lambda: TensorBoardHandler('unused', metrics=[xpnet.metric.Accuracy()]),
])
def test_handlers_with_metrics_nothing_updates_are_refused(make_handler):
    est = make_estimator()
    with pytest.raises(ValueError, match=r"metrics 'accuracy' is not a metric of this "
                                         'estimator, so nothing updates it'):
        est.fit(make_loader(), epochs=1, event_handlers=[make_handler()])
    with pytest.raises(ValueError, match='is not a metric of this estimator'):
        est.evaluate(make_loader(), event_handlers=[make_handler()])


def test_a_metric_updated_by_a_users_metric_handler_may_be_logged(capsys):
    est = make_estimator(quiet=False)
    mse = xpnet.metric.MSE()
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        est.fit(make_loader(), epochs=1, event_handlers=[
            MetricHandler([mse, *est.train_metrics]), LoggingHandler(metrics=[mse])])
    assert 'Train finished' in capsys.readouterr().out and not np.isnan(mse.get()[1])
