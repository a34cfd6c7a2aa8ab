"""Bad input to the Estimator and handlers: a clear ValueError naming the argument."""
import numpy as np
import pytest

import xpnet
from xpnet.estimator import Estimator
from xpnet.handlers import (CheckpointHandler, EarlyStoppingHandler, LoggingHandler,
                            StoppingHandler, TensorBoardHandler, ValidationHandler)

from estimator_helpers import make_data, make_estimator, make_loader, make_net


@pytest.mark.parametrize('kwargs, match', [
    ({}, 'exactly one of epochs or batches'),
    ({'epochs': 2, 'batches': 3}, 'exactly one of epochs or batches'),
    ({'epochs': 0}, 'epochs must be a positive integer, got 0'),
    ({'epochs': -1}, 'epochs must be a positive integer'),
    ({'batches': 0}, 'batches must be a positive integer'),
    ({'epochs': 1.5}, 'epochs must be a positive integer, got 1.5'),
    ({'epochs': True}, 'epochs must be a positive integer'),
    ({'epochs': 1, 'batch_axis': 'x'}, 'batch_axis must be an integer'),
])
def test_bad_counts(kwargs, match):
    est = make_estimator()
    with pytest.raises(ValueError, match=match):
        est.fit(make_loader(), **kwargs)


def test_loader_not_iterable():
    est = make_estimator()
    with pytest.raises(ValueError, match='train_data .*int which is not iterable'):
        est.fit(5, epochs=1)
    with pytest.raises(ValueError, match='val_data .*not iterable'):
        est.fit(make_loader(), val_data=object(), epochs=1)
    with pytest.raises(ValueError, match='val_data .*not iterable'):
        est.evaluate(3.0)


def test_bare_arrays_as_loader():
    x, y = make_data()
    est = make_estimator()
    with pytest.raises(ValueError, match=r'train_data must be a DataLoader.*bare ndarray of '
                                         r'shape \(48, 6\)'):
        est.fit(x, epochs=1)
    with pytest.raises(ValueError, match=r'train_data must yield \(data, label\) pairs.*a '
                                         r'list whose first element is a ndarray'):
        est.fit([x, y], epochs=1)
    with pytest.raises(ValueError, match=r'val_data must be a DataLoader.*NDArray'):
        est.evaluate(xpnet.array(x))


def test_batches_that_are_not_pairs():
    x, _ = make_data()
    est = make_estimator()
    loader = xpnet.data.DataLoader(xpnet.data.ArrayDataset(x), batch_size=16)
    with pytest.raises(ValueError, match=r'train_data must yield \(data, label\) pairs, but '
                                         r'yielded a NDArray of shape \(16, 6\)'):
        est.fit(loader, epochs=1)
    with pytest.raises(ValueError, match=r'val_data must yield \(data, label\) pairs'):
        est.evaluate(loader)


def test_label_shape_cannot_match_prediction():
    x, y = make_data()
    est = make_estimator()
    bad = [(xpnet.array(x[:16]), xpnet.array(y[:15]))]
    with pytest.raises(ValueError, match=r'label of shape \(15,\) cannot match the prediction '
                                         r'of shape \(16, 3\)'):
        est.fit(bad, epochs=1)


def test_handler_that_is_not_a_handler():
    est = make_estimator()

    class NotAHandler:
        def batch_end(self, est, *args, **kwargs):
            pass

    with pytest.raises(ValueError, match='event_handlers contains .*NotAHandler.*not an event '
                                         'handler'):
        est.fit(make_loader(), epochs=1, event_handlers=[NotAHandler()])
    with pytest.raises(ValueError, match='event_handlers must be an event handler or a list'):
        est.fit(make_loader(), epochs=1, event_handlers='logging')
    with pytest.raises(ValueError, match='event_handlers contains'):
        est.evaluate(make_loader(), event_handlers=[NotAHandler()])


def test_monitor_not_a_metric_of_this_estimator(tmp_path):
    est = make_estimator()
    other = make_estimator()
    stop = EarlyStoppingHandler(monitor=other.val_metrics[0])
    with pytest.raises(ValueError, match="EarlyStoppingHandler: monitor 'validation accuracy' "
                                         'is not a metric of this estimator'):
        est.fit(make_loader(), epochs=1, event_handlers=[stop])
    ckpt = CheckpointHandler(str(tmp_path), monitor=xpnet.metric.Accuracy())
    with pytest.raises(ValueError, match='CheckpointHandler: monitor .* not a metric of this'):
        est.fit(make_loader(), epochs=1, event_handlers=[ckpt])


def test_monitor_must_be_a_metric(tmp_path):
    with pytest.raises(ValueError, match='EarlyStoppingHandler: monitor must be one of'):
        EarlyStoppingHandler(monitor='validation accuracy')
    with pytest.raises(ValueError, match='save_best=True needs a monitor'):
        CheckpointHandler(str(tmp_path), save_best=True)


def test_loss_trainer_net_and_others():
    net = make_net()
    net.initialize()
    trainer = xpnet.Trainer(net.collect_params(), 'sgd', {'learning_rate': 0.1})
    with pytest.raises(ValueError, match='loss must be an xpnet.loss.Loss.*function'):
        Estimator(net, lambda p, l: p, trainer=trainer)
    with pytest.raises(ValueError, match='val_loss must be an xpnet.loss.Loss'):
        Estimator(net, xpnet.loss.L2Loss(), val_loss='l2', trainer=trainer)
    with pytest.raises(ValueError, match='trainer must be an xpnet.Trainer, got dict'):
        Estimator(net, xpnet.loss.L2Loss(), trainer={'learning_rate': 0.1})
    with pytest.raises(ValueError, match='net must be an xpnet Block'):
        Estimator(lambda x: x, xpnet.loss.L2Loss(), trainer=trainer)
    with pytest.raises(ValueError, match='train_metrics must be an EvalMetric'):
        Estimator(net, xpnet.loss.L2Loss(), train_metrics=[1], trainer=trainer)
    with pytest.raises(ValueError, match='context must be a Context'):
        Estimator(net, xpnet.loss.L2Loss(), trainer=trainer, context='cpu')
    with pytest.raises(ValueError, match='batch_processor must have fit_batch'):
        Estimator(net, xpnet.loss.L2Loss(), trainer=trainer, batch_processor=object())
    acc = xpnet.metric.Accuracy()
    with pytest.raises(ValueError, match='both as a training and as a validation metric'):
        Estimator(net, xpnet.loss.L2Loss(), trainer=trainer, train_metrics=acc, val_metrics=acc)


def test_handler_arguments(tmp_path):
    d = str(tmp_path / 'ckpt')
    with pytest.raises(ValueError, match="log_interval must be 'epoch' or a positive integer"):
        LoggingHandler(log_interval=0)
    with pytest.raises(ValueError, match="log_interval must be 'epoch'"):
        LoggingHandler(log_interval='batch')
    with pytest.raises(ValueError, match='progress_bar must be None'):
        LoggingHandler(progress_bar='yes')
    with pytest.raises(ValueError, match='ValidationHandler: batch_period must be a positive'):
        ValidationHandler(make_loader(), lambda **kw: None, batch_period=0)
    with pytest.raises(ValueError, match='ValidationHandler: eval_fn must be callable'):
        ValidationHandler(make_loader(), None)
    with pytest.raises(ValueError, match='CheckpointHandler: epoch_period must be'):
        CheckpointHandler(d, epoch_period=-2)
    with pytest.raises(ValueError, match='CheckpointHandler: max_checkpoints must be'):
        CheckpointHandler(d, max_checkpoints=0)
    with pytest.raises(ValueError, match='model_prefix must be a non-empty file name'):
        CheckpointHandler(d, model_prefix='a/b')
    with pytest.raises(ValueError, match="mode must be 'auto', 'min' or 'max', got 'best'"):
        EarlyStoppingHandler(xpnet.metric.Accuracy(), mode='best')
    with pytest.raises(ValueError, match='patience must be a non-negative integer'):
        EarlyStoppingHandler(xpnet.metric.Accuracy(), patience=-1)
    with pytest.raises(ValueError, match='StoppingHandler: max_epoch must be'):
        StoppingHandler(max_epoch=0)
    with pytest.raises(ValueError, match='TensorBoardHandler: histogram_period must be'):
        TensorBoardHandler(d, histogram_period=1.5)


def test_empty_loader():
    est = make_estimator()
    with pytest.raises(ValueError, match='train_data yielded no batches in epoch 0'):
        est.fit([], batches=3)


def test_numpy_batches_are_accepted():
    x, y = make_data()
    est = make_estimator()
    batches = [(x[i:i + 16], y[i:i + 16]) for i in range(0, 48, 16)]
    est.fit(batches, epochs=2)
    assert est.progress.batches == 6
    assert np.isfinite(est.history['training softmaxcrossentropyloss']).all()
