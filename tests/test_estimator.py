"""Estimator: construction defaults, fit/evaluate loops, event order, stopping, failures."""
import logging
import warnings

import numpy as np
import pytest

import xpnet
from xpnet import autograd
from xpnet import layers as nn
from xpnet.estimator import BatchProcessor, Estimator, History, Progress
from xpnet.handlers import (BatchEnd, EpochEnd, GradientUpdateHandler, LoggingHandler,
                            MetricHandler, StoppingHandler, TrainBegin, TrainEnd,
                            ValidationHandler)

from conftest import assert_placed
from estimator_helpers import (Recorder, clone_net, make_data, make_estimator, make_loader,
                               make_net, params_of)


# ---- construction ------------------------------------------------------------------------------
def test_default_trainer_is_sgd_with_gluon_learning_rate():
    net = make_net()
    with pytest.warns(UserWarning, match='default SGD'):
        est = Estimator(net, xpnet.loss.SoftmaxCrossEntropyLoss())
    assert type(est.trainer.optimizer).__name__ == 'SGD'
    assert est.trainer.learning_rate == pytest.approx(0.001)


def test_uninitialized_net_gets_initialized_with_given_initializer():
    net = make_net(in_units=0)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        est = Estimator(net, xpnet.loss.SoftmaxCrossEntropyLoss(),
                        initializer=xpnet.init.Constant(0.5))
    # Gluon's default: gpu(0) when there is a GPU
    assert est.context == ([xpnet.gpu(0)] if xpnet.num_gpus() else [xpnet.cpu()])
    # deferred shapes resolve at the first batch
    net(xpnet.array(make_data()[0], ctx=est.context[0]))
    w = net.collect_params()['0.weight'].data(est.context[0]).asnumpy()
    assert w.shape == (8, 6) and np.all(w == 0.5)


def test_initialized_net_is_not_reinitialized_and_warns():
    net = make_net()
    net.initialize(init='xavier')
    x, _ = make_data()
    net(xpnet.array(x))
    before = params_of(net)
    trainer = xpnet.Trainer(net.collect_params(), 'sgd', {'learning_rate': 0.1})
    with pytest.warns(UserWarning, match='already fully initialized'):
        Estimator(net, xpnet.loss.SoftmaxCrossEntropyLoss(), trainer=trainer,
                  initializer=xpnet.init.Constant(3.0))
    after = params_of(net)
    assert all(np.array_equal(before[k], after[k]) for k in before)


def test_default_metrics_follow_gluon_names():
    est = make_estimator()
    assert [m.name for m in est.train_metrics] == ['training accuracy',
                                                   'training softmaxcrossentropyloss']
    assert [m.name for m in est.val_metrics] == ['validation accuracy',
                                                 'validation softmaxcrossentropyloss']
    assert all(t is not v for t, v in zip(est.train_metrics, est.val_metrics))


def test_user_metrics_are_kept_and_prefixed_once():
    acc = xpnet.metric.Accuracy()
    est = make_estimator(train_metrics=acc)
    assert est.train_metrics == [acc] and acc.name == 'training accuracy'
    assert [m.name for m in est.val_metrics] == ['validation accuracy']
    # a second estimator on the same metric does not stack prefixes
    est2 = make_estimator(train_metrics=acc)
    assert est2.train_metrics[0].name == 'training accuracy'


def test_logger_is_per_estimator_and_writes_info_to_stdout(capsys):
    a = make_estimator(quiet=False)
    b = make_estimator(quiet=False)
    assert isinstance(a.logger, logging.Logger) and a.logger is not b.logger
    assert len(a.logger.handlers) == 1 and len(b.logger.handlers) == 1
    a.logger.info('hello from a')
    assert capsys.readouterr().out == 'hello from a\n'
    b.logger.setLevel(logging.WARNING)
    b.logger.info('hidden')
    assert capsys.readouterr().out == ''


def test_context_defaults_to_the_nets_context(ctx):
    est = make_estimator(ctx=ctx)
    assert est.context == [ctx]


# ---- fit ---------------------------------------------------------------------------------------
def test_fit_learns_and_returns_history():
    x, y = make_data(n=96)
    y = (x[:, 0] > 0.5).astype(np.float32)          # learnable
    est = make_estimator(lr=0.5)
    history = est.fit(make_loader(x, y), val_data=make_loader(x, y), epochs=8)
    assert history is est.history and isinstance(history, History)
    assert history.epoch == list(range(8))
    for name in ('training accuracy', 'training softmaxcrossentropyloss',
                 'validation accuracy', 'validation softmaxcrossentropyloss',
                 'learning_rate', 'epoch_time'):
        assert len(history[name]) == 8
    assert history['learning_rate'] == [pytest.approx(0.5)] * 8
    loss = history['training softmaxcrossentropyloss']
    assert loss[-1] < loss[0]
    assert history['validation accuracy'][-1] > 0.8


def test_fit_on_device(ctx):
    """The whole loop (split, forward, loss, metrics, update) runs on each backend."""
    est = make_estimator(ctx=ctx)
    before = params_of(est.net)
    est.fit(make_loader(), val_data=make_loader(), epochs=1)
    after = params_of(est.net)
    assert any(not np.array_equal(before[k], after[k]) for k in before)
    assert est.progress.batches == 3


def test_fit_equals_hand_written_loop():
    x, y = make_data()
    est = make_estimator(dropout=0.0)
    net2 = clone_net(est.net)
    trainer2 = xpnet.Trainer(net2.collect_params(), 'sgd', {'learning_rate': 0.1})
    loss_fn = xpnet.loss.SoftmaxCrossEntropyLoss()
    est.fit(make_loader(x, y), epochs=2)
    for _ in range(2):
        for data, label in make_loader(x, y):
            with autograd.record():
                loss = loss_fn(net2(data), label)
            loss.backward()
            trainer2.step(data.shape[0])
    a, b = params_of(est.net), params_of(net2)
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-6, atol=1e-7)


def test_fit_by_batches_spans_epochs():
    rec = Recorder()
    est = make_estimator()
    est.fit(make_loader(), batches=7, event_handlers=[rec])   # 3 batches per epoch
    assert est.progress.batches == 7
    assert rec.names().count('batch_end') == 7
    assert rec.names().count('epoch_end') == 3                # the last epoch is partial
    assert est.progress.epochs_done == 3


def test_event_order_and_progress_counters():
    rec = Recorder()
    est = make_estimator()
    est.fit(make_loader(batch_size=24), val_data=make_loader(batch_size=48), epochs=2,
            event_handlers=[rec])
    expected = [('train_begin', 0, 0, 0)]
    for e in range(2):
        expected.append(('epoch_begin', e, 0, 2 * e))
        for b in range(2):
            expected += [('batch_begin', e, b, 2 * e + b), ('batch_end', e, b + 1, 2 * e + b + 1)]
        expected.append(('epoch_end', e, 2, 2 * e + 2))
    expected.append(('train_end', 2, 0, 4))
    assert rec.events == expected


def test_validation_runs_before_same_event_handlers():
    order = []

    class Probe(EpochEnd):
        def epoch_end(self, est, *args, **kwargs):
            order.append(('probe', est.validated_this_epoch))

    est = make_estimator()
    est.fit(make_loader(), val_data=make_loader(), epochs=1, event_handlers=[Probe()])
    assert order == [('probe', True)]


def test_handlers_sorted_by_priority():
    calls = []

    class P(BatchEnd):
        def __init__(self, priority, tag):
            self.priority, self.tag = priority, tag

        def batch_end(self, est, *args, **kwargs):
            calls.append(self.tag)

    est = make_estimator()
    est.fit(make_loader(), batches=1, event_handlers=[P(5, 'c'), P(-5, 'a'), P(0, 'b')])
    assert calls == ['a', 'b', 'c']
    kinds = [type(h).__name__ for h in est.event_handlers]
    assert kinds.index('GradientUpdateHandler') < kinds.index('MetricHandler') < \
        kinds.index('StoppingHandler') < kinds.index('LoggingHandler')


def test_default_handlers_added_unless_given():
    est = make_estimator()
    est.fit(make_loader(), val_data=make_loader(), batches=1)
    kinds = sorted(type(h).__name__ for h in est.event_handlers)
    assert kinds == ['GradientUpdateHandler', 'LoggingHandler', 'MetricHandler',
                     'StoppingHandler', 'ValidationHandler']
    mine = [LoggingHandler(log_interval=1), MetricHandler(est.train_metrics),
            StoppingHandler(max_batch=1), GradientUpdateHandler(),
            ValidationHandler(make_loader(), est.evaluate)]
    est.fit(make_loader(), val_data=make_loader(), batches=1, event_handlers=mine)
    assert len(est.event_handlers) == 5 and all(any(h is m for m in mine)
                                                for h in est.event_handlers)


def test_no_validation_handler_without_val_data():
    est = make_estimator()
    est.fit(make_loader(), epochs=1)
    assert not any(isinstance(h, ValidationHandler) for h in est.event_handlers)
    assert not np.isnan(est.history['training accuracy'][0])
    assert 'validation accuracy' not in est.history


@pytest.mark.parametrize('how', ['batch_end', 'epoch_end', 'attribute'])
def test_handlers_can_stop_training(how):
    class Stop(BatchEnd, EpochEnd):
        def batch_end(self, est, *args, **kwargs):
            if est.progress.batches == 2:
                if how == 'batch_end':
                    return True
                if how == 'attribute':
                    est.stop_training = True
            return False

        def epoch_end(self, est, *args, **kwargs):
            return how == 'epoch_end'

    rec = Recorder()
    est = make_estimator()
    est.fit(make_loader(), epochs=5, event_handlers=[Stop(), rec])
    if how == 'epoch_end':
        assert est.progress.batches == 3 and est.progress.epochs_done == 1
    else:
        assert est.progress.batches == 2
    # epoch_end and train_end still run after a stop
    assert rec.names()[-2:] == ['epoch_end', 'train_end']


def test_handler_exception_runs_train_end_and_propagates():
    rec = Recorder(raise_at_batch=2)
    ends = []

    class End(TrainEnd):
        def train_end(self, est, *args, **kwargs):
            ends.append(est.exception)

    est = make_estimator()
    with pytest.raises(RuntimeError, match='boom from a handler'):
        est.fit(make_loader(), epochs=3, event_handlers=[rec, End()])
    assert rec.names()[-1] == 'train_end'
    assert len(ends) == 1 and isinstance(ends[0], RuntimeError)
    assert est.progress.batches == 2


def test_failing_train_end_does_not_hide_the_original_error():
    class BadEnd(TrainEnd):
        def train_end(self, est, *args, **kwargs):
            raise OSError('disk full')

    rec = Recorder(raise_at_batch=1)
    est = make_estimator()
    with pytest.raises(RuntimeError, match='boom'):
        est.fit(make_loader(), epochs=1, event_handlers=[BadEnd(), rec])
    assert rec.names()[-1] == 'train_end'
    # without an earlier error, a failing train_end is raised (after the others ran)
    rec = Recorder()
    with pytest.raises(OSError, match='disk full'):
        est.fit(make_loader(), epochs=1, event_handlers=[BadEnd(), rec])
    assert rec.names()[-1] == 'train_end'


def test_non_finite_loss_stops_before_the_update():
    x, y = make_data()
    x[20] = np.nan                                        # second batch
    est = make_estimator()
    with pytest.raises(FloatingPointError, match='non-finite training loss.*epoch 0, batch 1'):
        est.fit(make_loader(x, y), epochs=1)
    assert est.progress.batches == 1
    assert all(np.isfinite(v).all() for v in params_of(est.net).values())


# ---- evaluate ----------------------------------------------------------------------------------
def test_evaluate_returns_values_and_uses_val_net_without_dropout():
    x, y = make_data()
    est = make_estimator(dropout=0.9)
    first = est.evaluate(make_loader(x, y))
    second = est.evaluate(make_loader(x, y))
    assert set(first) == {'validation accuracy', 'validation softmaxcrossentropyloss'}
    assert first == second                                # dropout inactive, nothing recorded
    out = est.net(xpnet.array(x)).asnumpy()
    expected = (out.argmax(1) == y).mean()
    assert first['validation accuracy'] == pytest.approx(expected)


def test_evaluate_event_handlers_and_progress():
    rec = Recorder()
    est = make_estimator()
    est.evaluate(make_loader(), event_handlers=[rec])
    assert rec.names() == ['val_epoch_begin'] + ['val_batch_begin', 'val_batch_end'] * 3 + \
        ['val_epoch_end']
    assert est.eval_progress.batches == 3 and est.eval_progress.samples == 48
    assert est.progress.batches == 0


def test_val_net_and_val_loss_are_used():
    est = make_estimator()
    other = make_net()
    other.initialize(init=xpnet.init.Zero())
    est2 = make_estimator(val_net=other, val_loss=xpnet.loss.SoftmaxCrossEntropyLoss())
    est2.val_net = other
    values = est2.evaluate(make_loader())
    # zero weights: uniform prediction, loss log(3)
    assert values['validation softmaxcrossentropyloss'] == pytest.approx(np.log(3), rel=1e-5)
    assert est.val_net is est.net


# ---- batch processor, devices --------------------------------------------------------------------
def test_custom_batch_processor():
    calls = []

    class Scaled(BatchProcessor):
        def fit_batch(self, estimator, train_batch, batch_axis=0):
            calls.append('fit')
            data, label = train_batch
            return super().fit_batch(estimator, (data * 0, label), batch_axis)

    est = make_estimator(batch_processor=Scaled())
    est.fit(make_loader(), batches=2)
    assert calls == ['fit', 'fit']


def test_split_across_two_contexts_matches_one(ctx_list):
    ctxs = ctx_list
    x, y = make_data()
    est1 = make_estimator()
    net2 = clone_net(est1.net, ctx=ctxs)
    trainer2 = xpnet.Trainer(net2.collect_params(), 'sgd', {'learning_rate': 0.1})
    est2 = Estimator(net2, xpnet.loss.SoftmaxCrossEntropyLoss(), trainer=trainer2, context=ctxs)
    est2.logger.setLevel(logging.WARNING)
    rec = Recorder()
    est1.fit(make_loader(x, y), epochs=2)
    est2.fit(make_loader(x, y), epochs=2, event_handlers=[rec])
    a, b = params_of(est1.net), params_of(net2)
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-5, atol=1e-6)
    assert est2.progress.samples == 96
    assert_placed(net2, ctxs)


def test_batch_axis_splits_along_that_axis(ctx_list):
    seen = []

    class Probe(BatchEnd):
        def batch_end(self, est, *args, **kwargs):
            seen.append([d.shape for d in kwargs['label']])

    class Transposed(BatchProcessor):
        def fit_batch(self, estimator, train_batch, batch_axis=0):
            data, label = train_batch
            data = xpnet.array(data.asnumpy().T)         # (features, batch)
            return super().fit_batch(estimator, (data, label.reshape(1, -1)), batch_axis)

    ctxs = ctx_list

    class Net(nn.Block):
        def __init__(self):
            super().__init__()
            self.dense = nn.Dense(3, in_units=6)

        def forward(self, x):
            return self.dense(x.T)

    net = Net()
    net.initialize(ctx=ctxs)
    trainer = xpnet.Trainer(net.collect_params(), 'sgd', {'learning_rate': 0.1})

    class Reshape(xpnet.loss.SoftmaxCrossEntropyLoss):
        def forward(self, pred, label, *args):
            return super().forward(pred, label.reshape(-1), *args)

    est = Estimator(net, Reshape(), trainer=trainer, context=ctxs,
                    batch_processor=Transposed())
    est.logger.setLevel(logging.WARNING)
    est.fit(make_loader(), batches=1, batch_axis=1, event_handlers=[Probe()])
    assert seen == [[(1, 8), (1, 8)]]
    assert est.progress.samples == 16


def test_progress_state_round_trip():
    p = Progress(max_epoch=3)
    for _ in range(5):
        p.complete_batch(4)
    q = Progress()
    q.load_state_dict(p.state_dict())
    assert q.state_dict() == p.state_dict() == {'epoch': 0, 'epochs_done': 0, 'batches': 5,
                                                'epoch_batches': 5, 'samples': 20,
                                                'epoch_samples': 20}
    assert q.mid_epoch and not p.limit_reached()


def test_history_aligns_missing_values_with_nan():
    h = History()
    h.record(0, {'a': 1.0})
    h.record(1, {'a': 2.0, 'b': 5.0})
    h.record(2, {'b': 6.0})
    assert h.epoch == [0, 1, 2]
    assert h['a'][:2] == [1.0, 2.0] and np.isnan(h['a'][2])
    assert np.isnan(h['b'][0]) and h['b'][1:] == [5.0, 6.0]
    h2 = History()
    h2.load_state_dict(h.state_dict())
    assert h2.epoch == h.epoch and h2.history['b'] == h.history['b']
    last = h2.last()
    assert np.isnan(last['a']) and last['b'] == 6.0
    with pytest.raises(KeyError, match='has no'):
        h['c']


def test_train_begin_sees_limits():
    seen = {}

    class Probe(TrainBegin):
        def train_begin(self, est, *args, **kwargs):
            seen.update(epochs=est.max_epoch, batches=est.max_batch, axis=est.batch_axis)

    est = make_estimator()
    est.fit(make_loader(), epochs=1, event_handlers=[Probe()])
    assert seen == {'epochs': 1, 'batches': None, 'axis': 0}


def test_gluon_import_paths():
    """``from mxnet.gluon.contrib.estimator import estimator, event_handler`` scripts."""
    from xpnet.estimator import estimator, event_handler
    from xpnet.estimator.event_handler import CheckpointHandler, TrainBegin as TB
    import xpnet.handlers as H
    assert estimator.Estimator is Estimator and TB is TrainBegin
    assert CheckpointHandler is H.CheckpointHandler
    assert event_handler.LoggingHandler is H.LoggingHandler
    with pytest.raises(AttributeError):
        event_handler.NoSuchHandler
