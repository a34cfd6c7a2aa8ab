"""StoppingHandler: limits from fit or its own arguments."""
from xpnet.handlers import StoppingHandler

from estimator_helpers import Recorder, make_estimator, make_loader


def test_stops_at_fit_limits():
    est = make_estimator()
    est.fit(make_loader(), epochs=2)
    assert (est.progress.epochs_done, est.progress.batches) == (2, 6)
    est.fit(make_loader(), batches=4)
    assert (est.progress.epochs_done, est.progress.batches) == (2, 4)


def test_own_limits_take_precedence_and_fill_from_fit():
    rec = Recorder()
    est = make_estimator()
    est.fit(make_loader(), epochs=5, event_handlers=[StoppingHandler(max_batch=4), rec])
    assert est.progress.batches == 4 and rec.names()[-2:] == ['epoch_end', 'train_end']
    stop = StoppingHandler(max_epoch=1)
    est.fit(make_loader(), batches=100, event_handlers=[stop])
    assert est.progress.batches == 3 and stop.stop_training
    # only one StoppingHandler: the user's replaces the default
    assert sum(isinstance(h, StoppingHandler) for h in est.event_handlers) == 1


def test_reusable_across_fits():
    stop = StoppingHandler()
    est = make_estimator()
    est.fit(make_loader(), epochs=1, event_handlers=[stop])
    est.fit(make_loader(), epochs=2, event_handlers=[stop])
    assert est.progress.epochs_done == 2
