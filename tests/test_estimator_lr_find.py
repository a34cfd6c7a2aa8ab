"""Estimator.lr_find: the learning-rate range test, and that it leaves no trace."""
import numpy as np
import pytest

import xpnet

from estimator_helpers import make_data, make_estimator, make_loader, params_of


def _setup(optimizer_params=None, **kwargs):
    x, y = make_data(n=96, seed=1)
    y = (x[:, 0] > 0.5).astype(np.float32)           # learnable
    xpnet.random.seed(4)
    est = make_estimator(dropout=0.2, optimizer_params=optimizer_params or {'momentum': 0.9},
                         **kwargs)
    return est, make_loader(x, y, batch_size=8, shuffle=True)


def test_sweep_rates_losses_and_suggestion():
    est, train = _setup()
    result = est.lr_find(train, start_lr=1e-4, end_lr=10, num_batches=100)
    lrs, losses = np.array(result.lrs), np.array(result.losses)
    assert lrs[0] == pytest.approx(1e-4)
    np.testing.assert_allclose(lrs[1:] / lrs[:-1], (1e5) ** (1 / 99), rtol=1e-9)
    assert len(losses) == len(lrs) and np.isfinite(losses).all()
    lowest = int(np.argmin(losses))
    assert lowest > 20 and losses[lowest] < losses[0] - 0.05     # the loss fell
    assert result.suggested_lr == pytest.approx(lrs[lowest] / 10)


def test_diverging_sweep_stops_early():
    est, train = _setup()
    result = est.lr_find(train, start_lr=1e-2, end_lr=1e6, num_batches=60)
    assert len(result.lrs) < 60


@pytest.mark.filterwarnings('ignore:lr_find')
def test_everything_is_restored_and_fit_runs_as_if_nothing_happened():
    def run(find):
        sched = xpnet.lr_scheduler.FactorScheduler(step=5, factor=0.5, base_lr=0.1)
        est, train = _setup(optimizer_params={'momentum': 0.9, 'lr_scheduler': sched})
        est.fit(train, epochs=1)                     # momentum state, a scheduler's progress
        if find:
            before, loader_state = params_of(est.net), train.state_dict()
            est.lr_find(train, num_batches=20)       # cycles the loader past an epoch
            assert est.trainer.optimizer.lr_scheduler is sched
            assert train.state_dict() == loader_state
            for k, v in params_of(est.net).items():
                np.testing.assert_array_equal(v, before[k])
        est.fit(train, epochs=1)
        return est

    est, ref = run(find=True), run(find=False)
    # the same numbers as the run that never looked for a rate
    for k, v in params_of(est.net).items():
        np.testing.assert_array_equal(v, params_of(ref.net)[k], err_msg=k)
    assert est.trainer.learning_rate == ref.trainer.learning_rate


@pytest.mark.filterwarnings('ignore:lr_find')
def test_restores_the_rate_without_a_scheduler():
    est, train = _setup(lr=0.03)
    est.lr_find(train, num_batches=10)
    assert est.trainer.learning_rate == 0.03


@pytest.mark.parametrize('kwargs, message', [
    (dict(start_lr=0), 'start_lr must be a positive number'),
    (dict(start_lr=1.0, end_lr=0.1), r'start_lr \(1.0\) must be below end_lr'),
    (dict(num_batches=1), 'num_batches must be an integer >= 2'),
])
def test_bad_arguments(kwargs, message):
    est, train = _setup()
    with pytest.raises(ValueError, match=message):
        est.lr_find(train, **kwargs)
