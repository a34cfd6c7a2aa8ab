"""Small models, data and a recording handler shared by the estimator/handler tests."""
import logging

import numpy as np

import xpnet
from xpnet import layers as nn
from xpnet.data import ArrayDataset, DataLoader
from xpnet.estimator import Estimator
from xpnet.handlers import BatchBegin, BatchEnd, EpochBegin, EpochEnd, TrainBegin, TrainEnd


def make_data(n=48, dim=6, classes=3, seed=0):
    rng = np.random.RandomState(seed)
    x = rng.rand(n, dim).astype(np.float32)
    y = rng.randint(0, classes, n).astype(np.float32)
    return x, y


def make_loader(x=None, y=None, batch_size=16, shuffle=False, **kwargs):
    if x is None:
        x, y = make_data()
    return DataLoader(ArrayDataset(x, y), batch_size=batch_size, shuffle=shuffle, **kwargs)


def make_net(dropout=0.0, classes=3, in_units=6):
    """A small MLP; ``in_units=0`` leaves the first layer's input size to be inferred."""
    net = nn.Sequential()
    net.add(nn.Dense(8, activation='relu', in_units=in_units))
    if dropout:
        net.add(nn.Dropout(dropout))
    net.add(nn.Dense(classes, in_units=8))
    return net


def make_estimator(ctx=None, dropout=0.0, lr=0.1, optimizer='sgd', optimizer_params=None,
                   quiet=True, **kwargs):
    """A small classifier with an initialized net and an explicit trainer."""
    net = make_net(dropout)
    net.initialize(init='xavier', ctx=ctx)
    params = {'learning_rate': lr}
    params.update(optimizer_params or {})
    trainer = xpnet.Trainer(net.collect_params(), optimizer, params)
    est = Estimator(net, xpnet.loss.SoftmaxCrossEntropyLoss(), trainer=trainer,
                    context=ctx, **kwargs)
    if quiet:
        est.logger.setLevel(logging.WARNING)
    return est


def clone_net(net, ctx=None, dropout=0.0):
    """A fresh net with ``net``'s weights (``copy.deepcopy`` of a net drops the gradient
    attachment of its parameters, so tests build a new one)."""
    other = make_net(dropout)
    other.initialize(ctx=ctx)
    for (k, p), q in zip(net.collect_params().items(), other.collect_params().values()):
        q.set_data(p.data(p.list_ctx()[0]).asnumpy())
    return other


def params_of(net):
    return {k: p.data(p.list_ctx()[0]).asnumpy() for k, p in net.collect_params().items()}


class Recorder(TrainBegin, TrainEnd, EpochBegin, EpochEnd, BatchBegin, BatchEnd):
    """Logs every event with the estimator's progress counters at that moment."""

    def __init__(self, priority=0, stop_at_batch=None, stop_at_epoch=None, raise_at_batch=None):
        self.priority = priority
        self.events = []
        self.stop_at_batch = stop_at_batch
        self.stop_at_epoch = stop_at_epoch
        self.raise_at_batch = raise_at_batch

    def _rec(self, est, name):
        p = est.eval_progress if est.evaluating else est.progress
        self.events.append((('val_' if est.evaluating else '') + name, p.epoch,
                            p.epoch_batches, p.batches))

    def train_begin(self, est, *args, **kwargs):
        self._rec(est, 'train_begin')

    def train_end(self, est, *args, **kwargs):
        self._rec(est, 'train_end')

    def epoch_begin(self, est, *args, **kwargs):
        self._rec(est, 'epoch_begin')

    def epoch_end(self, est, *args, **kwargs):
        self._rec(est, 'epoch_end')
        return self.stop_at_epoch is not None and est.progress.epoch == self.stop_at_epoch

    def batch_begin(self, est, *args, **kwargs):
        assert 'batch' in kwargs
        self._rec(est, 'batch_begin')

    def batch_end(self, est, *args, **kwargs):
        assert {'batch', 'pred', 'label', 'loss'} <= set(kwargs)
        self._rec(est, 'batch_end')
        if self.raise_at_batch is not None and est.progress.batches == self.raise_at_batch:
            raise RuntimeError('boom from a handler')
        return self.stop_at_batch is not None and est.progress.batches == self.stop_at_batch

    def names(self):
        return [e[0] for e in self.events]
