"""Event filters: every n batches / epochs, once at a step, a predicate, for any handler
(Ignite's ``Events.ITERATION_COMPLETED(every=n)``), and the Gluon period arguments on top."""
import ast
import os

import pytest

import xpnet
from xpnet.handlers import (BatchBegin, BatchEnd, CheckpointHandler, EpochBegin, EpochEnd,
                            EventFilter, Events, LoggingHandler, TensorBoardHandler,
                            ValidationHandler, filtered)

from estimator_helpers import make_data, make_estimator, make_loader


class Counts(BatchBegin, BatchEnd, EpochBegin, EpochEnd):
    """Records the global batch count / epoch count at each call it receives."""

    def __init__(self):
        self.calls = []

    def batch_begin(self, est, *args, **kwargs):
        self.calls.append(('batch_begin', est.progress.batches + 1))

    def batch_end(self, est, *args, **kwargs):
        self.calls.append(('batch_end', est.progress.batches))

    def epoch_begin(self, est, *args, **kwargs):
        self.calls.append(('epoch_begin', est.progress.epoch))

    def epoch_end(self, est, *args, **kwargs):
        self.calls.append(('epoch_end', est.progress.epoch))

    def of(self, event):
        return [n for e, n in self.calls if e == event]


def _fit(handler, epochs=4, batch_size=16):      # 48 samples: 3 batches per epoch
    est = make_estimator()
    est.fit(make_loader(batch_size=batch_size), epochs=epochs, event_handlers=[handler])
    return est


def test_every_n_batches_and_epochs_on_a_user_handler():
    counts = filtered(Counts(), Events.BATCH_END(every=5), Events.BATCH_BEGIN(every=5),
                      Events.EPOCH_END(every=2))
    _fit(counts)
    assert counts.of('batch_end') == [5, 10]            # 12 batches in all
    assert counts.of('batch_begin') == [5, 10]          # the same batches as their ends
    assert counts.of('epoch_end') == [1, 3]             # after epochs 2 and 4 (indices 1, 3)
    assert counts.of('epoch_begin') == [0, 1, 2, 3]     # no filter: every epoch


def test_once_and_predicate():
    counts = filtered(Counts(), Events.BATCH_END(once=7),
                      Events.EPOCH_BEGIN(event_filter=lambda est, n: n % 2 == 1))
    _fit(counts)
    assert counts.of('batch_end') == [7]
    assert counts.of('epoch_begin') == [0, 2]           # epochs 1 and 3 (counted from 1)


def test_within_epoch_counts_from_each_epoch_start():
    counts = filtered(Counts(), Events.BATCH_END(every=2, within_epoch=True))
    _fit(counts, epochs=2)
    assert counts.of('batch_end') == [2, 5]             # batch 2 of each 3-batch epoch


def test_filter_called_inside_a_handler():
    seen = []

    class Sometimes(BatchEnd):
        every_4 = Events.BATCH_END(every=4)

        def batch_end(self, est, *args, **kwargs):
            if self.every_4(est):
                seen.append(est.progress.batches)

    _fit(Sometimes())
    assert seen == [4, 8, 12]


def test_filters_count_the_evaluation_pass_during_evaluate():
    counts = filtered(Counts(), Events.BATCH_END(every=2))
    est = make_estimator()
    est.fit(make_loader(), batches=5)
    est.evaluate(make_loader(batch_size=8), event_handlers=[counts])    # 6 batches
    assert len(counts.of('batch_end')) == 3


def test_gluon_periods_are_filters_and_follow_the_attribute(tmp_path):
    v = ValidationHandler(make_loader(), lambda **kw: None, epoch_period=2, batch_period=None)
    assert v.event_filters['epoch_end'].every == 2 and v.event_filters['batch_end'].never
    v.batch_period = 3                     # Gluon code sets attributes after construction
    assert v.event_filters['batch_end'].every == 3 and v.batch_period == 3
    with pytest.raises(ValueError, match='ValidationHandler: batch_period must be a positive'):
        v.batch_period = 0
    tb = TensorBoardHandler('unused', batch_period=10)
    assert tb.event_filters['batch_end'].every == 10
    ckpt = CheckpointHandler(str(tmp_path), epoch_period=None, batch_period=2)
    assert ckpt.event_filters['epoch_end'].never and ckpt.event_filters['batch_end'].every == 2


def test_a_filter_replaces_a_gluon_period(tmp_path):
    ckpt = filtered(CheckpointHandler(str(tmp_path), epoch_period=1),
                    Events.EPOCH_END(once=2))
    _fit(ckpt)
    assert sorted(os.listdir(tmp_path)) == ['model-epoch1batch6.params',
                                            'model-epoch1batch6.progress',
                                            'model-epoch1batch6.states']


def test_logging_interval_is_a_within_epoch_filter():
    handler = LoggingHandler(log_interval=4)
    f = handler._log_filter
    assert (f.event, f.every, f.within_epoch) == ('batch_end', 4, True)


def test_a_period_of_none_is_not_even_dispatched():
    from xpnet.estimator.event_handler import categorize_handlers
    calls = []
    v = ValidationHandler(make_loader(), lambda **kw: calls.append(1), epoch_period=None)
    events = categorize_handlers([v])
    assert events['batch_end'] == [] and events['epoch_end'] == []
    _fit(v, epochs=1)
    assert calls == []
    assert isinstance(v.event_filters['epoch_end'], EventFilter)


@pytest.mark.parametrize('kwargs, message', [
    (dict(), 'exactly one of every, once and event_filter'),
    (dict(every=2, once=3), 'exactly one of'),
    (dict(every=0), 'every must be a positive integer'),
    (dict(once=1.5), 'once must be a positive integer'),
    (dict(event_filter=3), 'event_filter must be callable'),
])
def test_bad_filters(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Events.BATCH_END(**kwargs)


def test_filtered_checks_the_handler_has_the_event():
    with pytest.raises(ValueError, match='has no epoch_end event'):
        filtered(type('OnlyBatches', (BatchEnd,), {})(), Events.EPOCH_END(every=2))
    with pytest.raises(ValueError, match='within_epoch applies to batch events'):
        Events.EPOCH_END(every=2, within_epoch=True)
    with pytest.raises(ValueError, match='expected EventFilters'):
        filtered(Counts(), 'every 10')


def test_event_protocol_is_a_leaf_module():
    """Both xpnet.estimator and xpnet.handlers import the mixins from xpnet._events, which
    imports nothing of xpnet; no handler module imports xpnet.estimator."""
    root = os.path.join(os.path.dirname(xpnet.__file__))
    tree = ast.parse(open(os.path.join(root, '_events.py')).read())
    imports = [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))]
    assert all(isinstance(n, ast.ImportFrom) is False or n.level == 0 for n in imports)
    assert not any('xpnet' in (getattr(n, 'module', '') or '') for n in imports)
    handlers_dir = os.path.join(root, 'handlers')
    for name in os.listdir(handlers_dir):
        if name.endswith('.py'):
            source = open(os.path.join(handlers_dir, name)).read()
            assert 'estimator' not in ''.join(
                line for line in source.splitlines() if line.lstrip().startswith(
                    ('import ', 'from '))), name
    from xpnet.estimator import TrainBegin as a
    from xpnet.handlers import TrainBegin as b
    from xpnet.estimator.event_handler import TrainBegin as c
    assert a is b is c


def test_data_sizes_unchanged():
    # the helpers' default loader really has 3 batches per epoch (the counts above rely on it)
    assert len(make_loader()) == 3 and make_data()[0].shape[0] == 48
