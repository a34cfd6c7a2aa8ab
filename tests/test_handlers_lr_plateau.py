"""ReduceLROnPlateauHandler: Keras' semantics (patience, cooldown, min_delta, min_lr, mode),
reductions at the right epochs, the rule with a Trainer scheduler and with a warmup, and its
state in checkpoints."""
import numpy as np
import pytest

import xpnet
from xpnet.handlers import (CheckpointHandler, EpochBegin, LRWarmupHandler,
                            ReduceLROnPlateauHandler)

from estimator_helpers import make_estimator, make_loader


class Scripted(xpnet.metric.EvalMetric):
    """A Gluon-style custom metric whose value in epoch e is ``values[e]``."""

    def __init__(self, values, name='scripted loss'):
        self.values, self.progress = values, None
        super().__init__(name)

    def update(self, labels, preds):
        pass

    def reset(self):
        pass

    def get(self):
        if self.progress is None:           # the validation copy: never used
            return self.name, float('nan')
        return self.name, float(self.values[min(self.progress.epoch, len(self.values) - 1)])


def _run(values, lr=0.1, optimizer_params=None, extra=(), **plateau):
    metric = Scripted(values)
    est = make_estimator(lr=lr, train_metrics=[metric], optimizer_params=optimizer_params)
    metric.progress = est.progress
    handler = ReduceLROnPlateauHandler(metric, **plateau)

    class Bind(EpochBegin):          # the Progress object of each fit
        def epoch_begin(self, e, *args, **kwargs):
            metric.progress = e.progress
    est.fit(make_loader(), epochs=len(values), event_handlers=[handler, Bind(), *extra])
    return est, handler


VALUES = [1.0, 0.9, 0.95, 0.92, 0.91, 0.8, 0.85, 0.86, 0.87, 0.88]


def test_reduces_after_patience_epochs_without_improvement():
    est, handler = _run(VALUES, factor=0.5, patience=2)
    assert [r[0] for r in handler.reductions] == [3, 7, 9]
    np.testing.assert_allclose(est.history['learning_rate'],
                               [0.1] * 3 + [0.05] * 4 + [0.025] * 2 + [0.0125])
    assert handler.mode == 'min'     # 'loss' in the name


def test_cooldown_skips_counting_after_a_reduction():
    _, handler = _run(VALUES, factor=0.5, patience=2, cooldown=2)
    assert [r[0] for r in handler.reductions] == [3, 7]


def test_min_lr_is_a_floor():
    est, handler = _run(VALUES, factor=0.5, patience=2, min_lr=0.03)
    assert [(r[0], r[2]) for r in handler.reductions] == [(3, 0.05), (7, 0.03)]
    assert est.history['learning_rate'][-1] == pytest.approx(0.03)


def test_min_delta_decides_what_counts_as_better():
    slow = [1.0, 0.99, 0.98, 0.97]
    assert _run(slow, factor=0.5, patience=2)[1].reductions == []
    assert [r[0] for r in _run(slow, factor=0.5, patience=2,
                               min_delta=0.05)[1].reductions] == [2]


def test_mode_max():
    rising = [0.5, 0.6, 0.55, 0.58, 0.7]
    _, handler = _run(rising, factor=0.5, patience=2, mode='max')
    assert [r[0] for r in handler.reductions] == [3]


@pytest.mark.parametrize('make_scheduler', [
    lambda: xpnet.lr_scheduler.FactorScheduler(step=4, factor=0.9, base_lr=0.1),
    lambda: xpnet.lr_scheduler.CosineScheduler(max_update=30, base_lr=0.1, final_lr=0.01,
                                               warmup_steps=3),
])
def test_with_a_trainer_scheduler_a_reduction_scales_the_rest_of_the_schedule(make_scheduler):
    values = [1.0, 1.0, 1.0, 0.5, 0.4, 0.3]          # a reduction at epoch 2 (patience 2)
    plain, _ = _run(values, factor=0.5, patience=100,
                    optimizer_params={'lr_scheduler': make_scheduler()})
    reduced, handler = _run(values, factor=0.5, patience=2,
                            optimizer_params={'lr_scheduler': make_scheduler()})
    assert [r[0] for r in handler.reductions] == [2]
    ratio = np.array(reduced.history['learning_rate']) / np.array(plain.history['learning_rate'])
    np.testing.assert_allclose(ratio, [1, 1, 0.5, 0.5, 0.5, 0.5], rtol=1e-12)
    # the schedule kept stepping: the rate still changed after the reduction
    assert len(set(plain.history['learning_rate'][2:])) > 1


def test_reductions_wait_for_the_warmup():
    flat = [1.0] * 6            # never improves: patience 1 would reduce at epoch 1
    est, handler = _run(flat, factor=0.5, patience=1,
                        extra=[LRWarmupHandler(warmup_steps=10)])
    # 3 batches per epoch: updates 1-9 (epochs 0-2) warm up, update 10 opens epoch 3
    assert [r[0] for r in handler.reductions] == [3, 4, 5]
    assert est.history['learning_rate'][2] == pytest.approx(0.1 * 9 / 10)


def test_state_goes_into_checkpoints_and_resume_is_exact(tmp_path):
    class StopAt(EpochBegin):
        def epoch_begin(self, e, *args, **kwargs):
            if e.progress.epoch == 6:
                raise KeyboardInterrupt

    ref, ref_handler = _run(VALUES, factor=0.5, patience=2, cooldown=1)
    with pytest.raises(KeyboardInterrupt):
        _run(VALUES, factor=0.5, patience=2, cooldown=1,
             extra=[CheckpointHandler(str(tmp_path)), StopAt()])
    est, handler = _run(VALUES, factor=0.5, patience=2, cooldown=1,
                        extra=[CheckpointHandler(str(tmp_path), resume_from_checkpoint=True)])
    assert handler.reductions[-1] == ref_handler.reductions[-1]
    assert (handler.wait, handler.cooldown_counter, handler.best) == \
        (ref_handler.wait, ref_handler.cooldown_counter, ref_handler.best)
    assert est.history['learning_rate'] == ref.history['learning_rate']


@pytest.mark.parametrize('kwargs, message', [
    (dict(factor=1.0), 'factor must be between 0 and 1'),
    (dict(factor=0), 'factor must be between 0 and 1'),
    (dict(patience=-1), 'patience must be a non-negative integer'),
    (dict(cooldown=1.5), 'cooldown must be a non-negative integer'),
    (dict(min_lr=-1), 'min_lr must be a non-negative number'),
    (dict(mode='up'), "mode must be 'auto', 'min' or 'max'"),
])
def test_bad_arguments(kwargs, message):
    est = make_estimator()
    with pytest.raises(ValueError, match=message):
        ReduceLROnPlateauHandler(est.train_metrics[1], **kwargs)


def test_defaults_are_keras():
    est = make_estimator()
    h = ReduceLROnPlateauHandler(est.val_metrics[0])
    assert (h.factor, h.patience, h.mode, h.min_delta, h.cooldown, h.min_lr) == \
        (0.1, 10, 'max', 1e-4, 0, 0.0)
