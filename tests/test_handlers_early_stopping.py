"""EarlyStoppingHandler: patience, min_delta, baseline, modes, restore_best, state."""
import math

import numpy as np
import pytest

import xpnet
from xpnet.handlers import EarlyStoppingHandler, EpochEnd

from estimator_helpers import make_estimator, make_loader, params_of


def scripted(metric, values):
    """A handler that sets ``metric`` to ``values[epoch]`` at each epoch end, before the
    early-stopping check (priority -500 < 0)."""

    class Push(EpochEnd):
        priority = -500

        def epoch_end(self, est, *args, **kwargs):
            metric.reset()
            value = values[est.progress.epoch]
            if isinstance(metric, xpnet.metric.Loss):
                metric.update(0, [xpnet.array([value])])
            else:   # accuracy: value = fraction of 100 predictions that are right
                k = int(round(value * 100))
                pred = np.zeros((100, 2), np.float32)
                pred[:k, 1] = 1
                metric.update([xpnet.array(np.ones(100, np.float32))], [xpnet.array(pred)])
    return Push()


def _run(values, epochs=None, monitor='loss', **kwargs):
    est = make_estimator()
    metric = est.train_metrics[1] if monitor == 'loss' else est.train_metrics[0]
    stop = EarlyStoppingHandler(metric, **kwargs)
    push = scripted(metric, values)
    est.fit(make_loader(), epochs=epochs or len(values), event_handlers=[stop, push])
    return est, stop


def test_patience_counts_epochs_without_improvement():
    est, stop = _run([1.0, 0.9, 0.95, 0.93, 0.92, 0.5], patience=3)
    assert est.progress.epochs_done == 5 and stop.stopped_epoch == 4
    assert stop.best == pytest.approx(0.9) and stop.best_epoch == 1 and stop.wait == 3


def test_patience_zero_stops_at_first_non_improvement():
    est, stop = _run([1.0, 0.9, 0.9, 0.1])
    assert est.progress.epochs_done == 3 and stop.stopped_epoch == 2


def test_min_delta():
    est, stop = _run([1.0, 0.95, 0.92, 0.5], patience=1, min_delta=0.1)
    # 0.95 is not 0.1 better than 1.0: wait 1 >= patience 1 -> stop at epoch 1
    assert stop.stopped_epoch == 1 and stop.best == 1.0
    est, stop = _run([1.0, 0.85, 0.80, 0.7], patience=1, min_delta=-0.1)   # sign ignored
    assert stop.stopped_epoch == 2 and stop.best == pytest.approx(0.85)


def test_baseline():
    est, stop = _run([0.8, 0.7, 0.6, 0.3, 0.2], patience=2, baseline=0.5)
    assert stop.stopped_epoch == 1 and stop.best == 0.5       # never beat the baseline
    est, stop = _run([0.8, 0.4, 0.45, 0.46, 0.2], patience=2, baseline=0.5)
    assert stop.stopped_epoch == 3 and stop.best == pytest.approx(0.4)


def test_auto_mode_maximizes_accuracy_and_explicit_modes():
    est, stop = _run([0.5, 0.6, 0.55, 0.7], monitor='acc', patience=0)
    assert stop.mode == 'max' and stop.stopped_epoch == 2 and stop.best == pytest.approx(0.6)
    est, stop = _run([0.5, 0.6, 0.55, 0.7], monitor='loss', patience=0, mode='max')
    assert stop.stopped_epoch == 2
    est, stop = _run([0.5, 0.6, 0.55], monitor='acc', patience=0, mode='min')
    assert stop.stopped_epoch == 1


def test_restore_best_weights():
    est = make_estimator()
    metric = est.train_metrics[1]
    snapshots = {}

    class Snap(EpochEnd):
        priority = -100

        def epoch_end(self, e, *args, **kwargs):
            snapshots[e.progress.epoch] = params_of(e.net)

    stop = EarlyStoppingHandler(metric, patience=2, restore_best=True)
    push = scripted(metric, [1.0, 0.5, 0.7, 0.8, 0.1])
    est.fit(make_loader(), epochs=5, event_handlers=[stop, push, Snap()])
    assert est.progress.epochs_done == 4 and stop.best_epoch == 1
    final = params_of(est.net)
    for k in final:
        np.testing.assert_array_equal(final[k], snapshots[1][k])
    assert not np.array_equal(final['0.weight'], snapshots[3]['0.weight'])


def test_validation_metric_checked_only_when_validation_ran():
    est = make_estimator()
    val_loss = est.val_metrics[1]
    stop = EarlyStoppingHandler(val_loss, patience=0)
    handler = xpnet.handlers.ValidationHandler(make_loader(), est.evaluate, epoch_period=3)
    est.fit(make_loader(), epochs=4, event_handlers=[stop, handler])
    # epochs 0, 1 and 3 had no validation: no decision there, so training did not stop
    assert est.progress.epochs_done == 4 and stop.best_epoch == 2 and stop.wait == 0


def test_nan_monitor_warns_and_does_not_count():
    est = make_estimator()
    stop = EarlyStoppingHandler(est.val_metrics[0], patience=0)

    class Fake(EpochEnd):        # claims validation ran, but the metric was never updated
        priority = -500

        def epoch_end(self, e, *args, **kwargs):
            e.validated_this_epoch = True

    with pytest.warns(RuntimeWarning, match='has no value yet'):
        est.fit(make_loader(), epochs=2, event_handlers=[stop, Fake()])
    assert stop.wait == 0 and est.progress.epochs_done == 2


def test_state_dict_round_trip_and_train_begin_reset():
    est, stop = _run([1.0, 0.9, 0.95], patience=5, restore_best=True)
    state = stop.state_dict()
    assert state['wait'] == 1 and state['monitor']['best'] == pytest.approx(0.9)
    assert set(state['best_weights']) == set(est.net.collect_params())
    other = EarlyStoppingHandler(est.train_metrics[1], patience=5, restore_best=True)
    other.load_state_dict(state)
    assert other.best == stop.best and other.wait == 1 and other.best_epoch == 1
    other.train_begin(est)
    assert other.best == math.inf and other.wait == 0 and other.best_weights is None


def test_logs_when_stopping(capsys):
    est = make_estimator(quiet=False)
    metric = est.train_metrics[1]
    stop = EarlyStoppingHandler(metric, patience=0)
    est.fit(make_loader(), epochs=3,
            event_handlers=[stop, scripted(metric, [1.0, 2.0, 3.0])])
    out = capsys.readouterr().out
    assert '[Epoch 1] EarlyStoppingHandler: early stopping due to training ' \
           'softmaxcrossentropyloss not improving' in out
