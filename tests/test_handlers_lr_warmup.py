"""LRWarmupHandler: MXNet's warmup formula per update, the rule with schedulers, resume."""
import numpy as np
import pytest

import xpnet
from xpnet.estimator import BatchProcessor
from xpnet.handlers import BatchEnd, CheckpointHandler, GradientUpdateHandler, LRWarmupHandler

from estimator_helpers import make_data, make_estimator, make_loader, params_of


class Rates(BatchEnd):
    """The learning rate each update used, by update number."""
    priority = -1500          # after the update

    def __init__(self):
        self.by_update = {}

    def batch_end(self, est, *args, **kwargs):
        update = est.trainer.optimizer.num_update
        if update:          # the first batch_end after an update sees that update's rate
            self.by_update.setdefault(update, est.trainer.learning_rate)


def _fit(warmup, batches=12, extra=(), **kwargs):
    rates = Rates()
    est = make_estimator(lr=0.2, **kwargs)
    est.fit(make_loader(batch_size=8), batches=batches,
            event_handlers=[warmup, rates, *extra])
    return est, rates.by_update


def test_linear_warmup_follows_mxnet():
    _, rates = _fit(LRWarmupHandler(warmup_steps=5, begin_lr=0.05))
    expected = {u: 0.05 + (0.2 - 0.05) * u / 5 for u in range(1, 5)}
    expected.update({u: 0.2 for u in range(5, 13)})
    assert rates.keys() == expected.keys()
    for u in rates:
        assert rates[u] == pytest.approx(expected[u], rel=1e-12), u
    assert rates[12] == 0.2                   # exactly the trainer's rate afterwards


def test_constant_warmup():
    _, rates = _fit(LRWarmupHandler(warmup_steps=4, begin_lr=0.01, mode='constant'))
    assert [rates[u] for u in range(1, 7)] == [0.01, 0.01, 0.01, 0.2, 0.2, 0.2]


def test_warmup_counts_updates_with_accumulation():
    _, rates = _fit(LRWarmupHandler(warmup_steps=3), batches=12,
                    extra=[GradientUpdateHandler(accumulate=2)])
    assert sorted(rates) == [1, 2, 3, 4, 5, 6]
    assert [rates[u] for u in (1, 2, 3)] == pytest.approx([0.2 / 3, 0.4 / 3, 0.2])


def test_a_trainer_scheduler_owns_the_rate():
    sched = xpnet.lr_scheduler.FactorScheduler(step=10, factor=0.5, base_lr=0.2)
    with pytest.raises(ValueError, match='LRWarmupHandler: the trainer has an lr_scheduler.*'
                                         'give the scheduler warmup_steps'):
        _fit(LRWarmupHandler(warmup_steps=5), optimizer_params={'lr_scheduler': sched})


@pytest.mark.parametrize('kwargs, message', [
    (dict(warmup_steps=0), 'warmup_steps must be a positive integer'),
    (dict(warmup_steps=3, begin_lr=-1), 'begin_lr must be a non-negative number'),
    (dict(warmup_steps=3, mode='cosine'), "mode must be 'linear' or 'constant'"),
])
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        LRWarmupHandler(**kwargs)


def test_begin_above_the_target_is_refused():
    with pytest.raises(ValueError, match=r"begin_lr \(0.5\) is above the trainer's"):
        _fit(LRWarmupHandler(warmup_steps=3, begin_lr=0.5))


class _Interrupt(BatchProcessor):
    def fit_batch(self, estimator, train_batch, batch_axis=0):
        out = super().fit_batch(estimator, train_batch, batch_axis)
        if estimator.progress.batches == 4:        # during batch 5, mid-warmup
            raise KeyboardInterrupt
        return out


def test_resume_in_the_middle_of_the_warmup_is_exact(tmp_path):
    x, y = make_data(n=48)

    def run(handlers, processor=None, seed=0):
        xpnet.random.seed(seed)
        rates = Rates()
        est = make_estimator(lr=0.2, dropout=0.2, optimizer='adam', batch_processor=processor)
        est.fit(make_loader(x, y, batch_size=8, shuffle=True), epochs=2,
                event_handlers=[LRWarmupHandler(warmup_steps=8), rates, *handlers])
        return est, rates.by_update

    ref, ref_rates = run([])
    with pytest.raises(KeyboardInterrupt):
        run([CheckpointHandler(str(tmp_path))], _Interrupt())
    est, rates = run([CheckpointHandler(str(tmp_path), resume_from_checkpoint=True)], seed=3)
    assert sorted(rates) == list(range(5, 13))
    assert all(rates[u] == ref_rates[u] for u in rates)
    for k, v in params_of(est.net).items():
        np.testing.assert_array_equal(v, params_of(ref.net)[k])
