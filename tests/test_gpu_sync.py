"""No host synchronisation inside a training step: ``Estimator.fit`` reads device values
only at log points (metric values, the epoch's end). Every batch runs inside
``allow_synchronize(False)`` (the simulated device's, or ``cupyx``'s on a GPU), which raises
at any read-back. A non-finite loss is found on the device, skips the update there and
raises ``FloatingPointError`` at the next read-back, with the weights (and the checkpoint)
of the batch before it."""
import logging
import math
import os

import numpy as np
import pytest

import xpnet
from xpnet import layers as nn
from xpnet.backend import sim, simulated
from xpnet.data import ArrayDataset, DataLoader
from xpnet.estimator import Estimator
from xpnet.handlers import BatchBegin, BatchEnd, CheckpointHandler, LoggingHandler

DEVICES = ['sim'] + (['gpu'] if xpnet.num_gpus() > 0 else [])


def _device(name):
    return sim(1) if name == 'sim' else xpnet.gpu(0)


def _no_sync(ctx):
    """``allow_synchronize(False)`` of the device's array module."""
    if ctx.device_type == 'sim':
        return simulated.allow_synchronize(False)
    import cupyx
    return cupyx.allow_synchronize(False)


def _syncs(ctx):
    return simulated.sync_count() if ctx.device_type == 'sim' else 0


class _Enter(BatchBegin):
    priority = -math.inf

    def __init__(self, ctx, log):
        self.ctx, self.log = ctx, log

    def batch_begin(self, estimator, *args, **kwargs):
        self.log['scope'] = _no_sync(self.ctx)
        self.log['scope'].__enter__()
        self.log['start'] = _syncs(self.ctx)


class _Exit(BatchEnd):
    priority = 1e9                        # after every handler but the logging (inf)

    def __init__(self, ctx, log):
        self.ctx, self.log = ctx, log

    def batch_end(self, estimator, *args, **kwargs):
        self.log['scope'].__exit__(None, None, None)
        self.log['per_batch'].append(_syncs(self.ctx) - self.log['start'])


def _estimator(ctx, optimizer='sgd', dropout=0.2, batch_norm=True):
    # (a NaN batch turns BatchNorm's running statistics NaN in its forward pass, on every
    # device: the non-finite tests leave it out)
    xpnet.random.seed(0)
    net = nn.HybridSequential()
    net.add(nn.Dense(32, activation='relu', in_units=12))
    if batch_norm:
        net.add(nn.BatchNorm(in_channels=32))
    net.add(nn.Dropout(dropout), nn.Dense(4, in_units=32))
    net.initialize(init='xavier', ctx=ctx)
    trainer = xpnet.Trainer(net.collect_params(), optimizer,
                            {'learning_rate': 0.05, 'momentum': 0.9} if optimizer == 'sgd'
                            else {'learning_rate': 0.01})
    est = Estimator(net, xpnet.loss.SoftmaxCrossEntropyLoss(), trainer=trainer, context=ctx,
                    train_metrics=[xpnet.metric.Accuracy(), xpnet.metric.Loss(),
                                   xpnet.metric.MSE()])
    est.logger.setLevel(logging.WARNING)
    return est


def _loader(n=64, batch=16, nan_at=None, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 12)).astype(np.float32)
    y = rng.integers(0, 4, n).astype(np.float32)
    if nan_at is not None:
        x[nan_at] = np.nan
    return DataLoader(ArrayDataset(x, y), batch_size=batch)


@pytest.mark.parametrize('device', DEVICES)
@pytest.mark.parametrize('optimizer', ['sgd', 'adam'])
def test_fit_reads_nothing_back_between_log_points(device, optimizer):
    ctx = _device(device)
    est = _estimator(ctx, optimizer)
    log = {'per_batch': []}
    est.fit(_loader(), epochs=2, event_handlers=[
        _Enter(ctx, log), _Exit(ctx, log), LoggingHandler(log_interval='epoch',
                                                         progress_bar=False)])
    assert len(log['per_batch']) == 8
    assert log['per_batch'] == [0] * 8              # (the scope raises at any sync, too)
    names = [m.get()[0] for m in est.train_metrics]
    values = [m.get()[1] for m in est.train_metrics]
    assert 'training accuracy' in names and all(np.isfinite(values)), (names, values)


@pytest.mark.parametrize('device', DEVICES)
def test_a_non_finite_loss_skips_the_update_on_the_device_and_raises_at_the_read_back(
        device, tmp_path):
    ctx = _device(device)
    est = _estimator(ctx, batch_norm=False)
    snapshots = {}

    class Snap(BatchEnd):
        priority = 1e9 - 1

        def batch_end(self, e, *args, **kwargs):
            with _no_sync(ctx):
                snapshots[e.progress.batches] = [p.data()._data.copy()
                                                 for p in e.net.collect_params().values()]
    log = {'per_batch': []}
    with pytest.raises(FloatingPointError, match=r'non-finite training loss in epoch 0, '
                                                 r'batch 2 \(batch 3 of the run\)'):
        est.fit(_loader(nan_at=40), epochs=1, event_handlers=[
            _Enter(ctx, log), _Exit(ctx, log), Snap(),
            CheckpointHandler(str(tmp_path), epoch_period=None),
            LoggingHandler(log_interval='epoch', progress_bar=False)])
    assert log['per_batch'] == [0, 0, 0, 0]          # raised at the epoch's end, not before
    params = [p.data().asnumpy() for p in est.net.collect_params().values()]
    for got, kept in zip(params, snapshots[2]):      # the weights after batch 2
        np.testing.assert_array_equal(got, xpnet.backend.to_host(kept))
    assert all(np.isfinite(p).all() for p in params)
    # the interrupt checkpoint is the last finite batch's, and it resumes there
    assert est.resume_point is not None and est.resume_point.progress['batches'] == 2
    files = sorted(os.listdir(tmp_path))
    assert files and all('batch2' in f for f in files), files
    other = _estimator(ctx, batch_norm=False)
    other.net.load_parameters(str(tmp_path / [f for f in files if f.endswith('.params')][0]),
                              ctx=ctx)
    for a, b in zip(params, [p.data().asnumpy() for p in other.net.collect_params().values()]):
        np.testing.assert_array_equal(a, b)


def test_non_finite_loss_on_the_cpu_still_stops_before_the_update():
    est = _estimator(xpnet.cpu(), batch_norm=False)
    with pytest.raises(FloatingPointError, match='non-finite training loss.*batch 2'):
        est.fit(_loader(nan_at=40), epochs=1)
    assert est.progress.batches == 2


def test_an_optimizer_without_a_device_kernel_checks_on_the_host():
    """RMSProp updates parameter by parameter: the guard reads the loss back per batch
    (as before) and still stops before the bad batch's update."""
    ctx = sim(1)
    xpnet.random.seed(0)
    net = nn.Dense(4, in_units=12)
    net.initialize(ctx=ctx)
    trainer = xpnet.Trainer(net.collect_params(), 'rmsprop', {'learning_rate': 0.01})
    est = Estimator(net, xpnet.loss.SoftmaxCrossEntropyLoss(), trainer=trainer, context=ctx)
    est.logger.setLevel(logging.WARNING)
    with pytest.raises(FloatingPointError):
        est.fit(_loader(nan_at=40), epochs=1)
    assert est.progress.batches == 2
    assert np.isfinite(net.weight.data().asnumpy()).all()


@pytest.mark.parametrize('device', DEVICES)
def test_device_label_errors_surface_at_the_metric_read_back(device):
    ctx = _device(device)
    m = xpnet.metric.Accuracy()
    pred = xpnet.array(np.random.rand(4, 3), ctx=ctx)
    with _no_sync(ctx):
        m.update(xpnet.array([0, 1, 3, 1], ctx=ctx), pred)     # 3 is not a class
    with pytest.raises(ValueError, match=r'accuracy: labels must be whole class indices '
                                         r'in \[0, 3\)'):
        m.get()


@pytest.mark.parametrize('device', DEVICES)
def test_clip_global_norm_stays_on_the_device(device):
    ctx = _device(device)
    rng = np.random.default_rng(0)
    hosts = [rng.standard_normal(s).astype(np.float32) for s in ((3, 4), (5,), (2, 2, 2))]
    arrays = [xpnet.array(h, ctx=ctx) for h in hosts]
    with _no_sync(ctx):
        norm = xpnet.utils.clip_global_norm(arrays, 1.0, check_isfinite=False)
    assert isinstance(norm, xpnet.NDArray) and norm.shape == (1,) and norm.context == ctx
    total = math.sqrt(sum(float((h.astype(np.float64) ** 2).sum()) for h in hosts))
    assert float(norm.asnumpy()[0]) == pytest.approx(total, rel=1e-6)
    for a, h in zip(arrays, hosts):
        np.testing.assert_allclose(a.asnumpy(), h / (total + 1e-8), rtol=1e-5)
    again = [xpnet.array(h, ctx=ctx) for h in hosts]
    assert xpnet.utils.clip_global_norm(again, 1.0) == pytest.approx(total, rel=1e-6)


@pytest.mark.parametrize('device', DEVICES)
def test_embedding_and_take_read_nothing_back(device):
    ctx = _device(device)
    emb = nn.Embedding(10, 3)
    emb.initialize(ctx=ctx)
    idx = xpnet.array([[1, 2], [9, 12]], ctx=ctx, dtype='int64')     # 12: clipped to 9
    with _no_sync(ctx), xpnet.autograd.record():
        out = emb(idx)
        bad = xpnet.nd.take(emb.weight.data(ctx), xpnet.array([1, 20], ctx=ctx,
                                                               dtype='int64'), mode='raise')
    with pytest.raises(IndexError, match='take: index out of range'):
        bad.asnumpy()
    got = out.asnumpy()
    np.testing.assert_array_equal(got[1, 1], got[1, 0])
