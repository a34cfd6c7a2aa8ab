"""ValidationHandler: periods in epochs and batches, handlers passed to eval_fn."""
from xpnet.handlers import ValidationHandler

from estimator_helpers import Recorder, make_estimator, make_loader


def _spy(est, calls):
    def eval_fn(val_data, batch_axis, event_handlers):
        calls.append((est.progress.epoch, est.progress.batches, batch_axis, event_handlers))
        return est.evaluate(val_data, batch_axis, event_handlers)
    return eval_fn


def test_epoch_period():
    est = make_estimator()
    calls = []
    handler = ValidationHandler(make_loader(), _spy(est, calls), epoch_period=2)
    est.fit(make_loader(), epochs=5, event_handlers=[handler])
    assert [(c[0], c[1]) for c in calls] == [(1, 6), (3, 12)]
    # History holds validation values only where validation ran
    hist = est.history['validation accuracy']
    assert [v == v for v in hist] == [False, True, False, True, False]


def test_batch_period_and_no_epoch_validation():
    est = make_estimator()
    calls = []
    rec = Recorder()
    handler = ValidationHandler(make_loader(), _spy(est, calls), epoch_period=None,
                                batch_period=2, event_handlers=[rec])
    est.fit(make_loader(), epochs=2, event_handlers=[handler])
    assert [c[1] for c in calls] == [2, 4, 6]
    assert all(c[3] == [rec] for c in calls)
    assert rec.names().count('val_epoch_begin') == 3


def test_default_priority_and_batch_axis():
    est = make_estimator()
    calls = []
    handler = ValidationHandler(make_loader(), _spy(est, calls))
    assert handler.priority == -1000 and handler.epoch_period == 1 and handler.batch_period is None
    est.fit(make_loader(), val_data=make_loader(), epochs=1, event_handlers=[handler])
    assert len(calls) == 1 and calls[0][2] == 0        # the user's handler replaced the default
