"""The Estimator across ranks: checks run by test_distributed_estimator.py.

Under ``mpiexec -n N python tests/dist_estimator_worker.py OUT CHECK...`` each check runs on
every rank and rank 0 prints ``OK <check>`` once it passed everywhere (a failing assertion
aborts the job). :func:`fit_run` is also imported by the test and run in one process: the
same code on the whole data is the reference of the N-rank run on shards.
"""
import json
import os
import shutil
import sys

import numpy as np

import xpnet
import xpnet.distributed as dist
from xpnet import layers as nn
from xpnet.backend import sim
from xpnet.data import ArrayDataset, DataLoader, SplitSampler
from xpnet.estimator import BatchProcessor, Estimator
from xpnet.handlers import (BatchEnd, CheckpointHandler, EarlyStoppingHandler,
                            GradientUpdateHandler, LoggingHandler, ReduceLROnPlateauHandler)
from xpnet.metric import EvalMetric

GLOBAL_BATCH = 8


def data(n, seed):
    rng = np.random.RandomState(seed)
    x = rng.rand(n, 6).astype(np.float32)
    y = (x[:, 0] * 3).astype(np.int64).clip(0, 2).astype(np.float32)   # learnable
    flip = rng.rand(n) < 0.2
    y[flip] = rng.randint(0, 3, int(flip.sum()))
    return x, y


def loaders(val_batch=7):
    """This rank's shards: the training set shuffled by (seed, epoch), the global batch
    split over the ranks; 15 validation samples, so that one rank's part is padded."""
    x, y = data(24, 0)
    xv, yv = data(15, 1)
    train = DataLoader(ArrayDataset(x, y), batch_size=GLOBAL_BATCH // dist.size(),
                       sampler=SplitSampler(len(x), shuffle=True, seed=3))
    val = DataLoader(ArrayDataset(xv, yv), batch_size=val_batch,
                     sampler=SplitSampler(len(xv)))
    return train, val


def build_net(seed, dropout=0.0, sync_bn=False, ctx=None):
    xpnet.random.seed(seed)
    net = nn.Sequential()
    net.add(nn.Dense(16, activation='relu', in_units=6))
    if sync_bn:
        net.add(nn.SyncBatchNorm(in_channels=16))
    if dropout:
        net.add(nn.Dropout(dropout))
    net.add(nn.Dense(3, in_units=16))
    net.initialize(init='xavier', ctx=ctx)
    return net


class RankZeroOnly(EvalMetric):
    """A user's metric with a get() of its own and no merge protocol."""

    def __init__(self):
        super().__init__('rank_answer')

    def update(self, labels, preds):
        self.answer = float(dist.rank() + 1)

    def reset(self):
        super().reset()
        self.answer = float('nan')

    def get(self):
        return self.name, self.answer


def fit_run(epochs=3, accumulate=1, clip=None, quiet=False, ctx=None):
    """Train a net with SyncBatchNorm through the Estimator on this rank's shards;
    returns ``(estimator, history)``."""
    net = build_net(0, sync_bn=True, ctx=ctx)
    trainer = xpnet.Trainer(net.collect_params(), 'sgd',
                            {'learning_rate': 0.2, 'momentum': 0.9}, kvstore='dist_sync')
    est = Estimator(net, xpnet.loss.SoftmaxCrossEntropyLoss(), trainer=trainer,
                    val_metrics=[xpnet.metric.Accuracy(), xpnet.metric.Loss(),
                                 xpnet.metric.PCC()])
    if quiet:
        est.logger.setLevel('WARNING')
    train, val = loaders()
    history = est.fit(train, val, epochs=epochs, event_handlers=[
        ReduceLROnPlateauHandler(est.val_metrics[1], factor=0.5, patience=1),
        GradientUpdateHandler(accumulate=accumulate, clip_global_norm=clip),
        LoggingHandler(progress_bar=False)])
    return est, history


ACCUMULATE_CLIP = {'accumulate': 2, 'clip': 0.05, 'quiet': True}


def _same_everywhere(value, what):
    everyone = dist.allgather_object(value)
    assert all(v == everyone[0] for v in everyone), (what, everyone)


def _params(net):
    return {k: p.data().asnumpy() for k, p in net.collect_params().items()}


def _assert_params_same_everywhere(net):
    flat = np.concatenate([v.ravel().view(np.uint32) for v in _params(net).values()])
    everyone = dist.allgather(flat[None])
    assert (everyone == everyone[0]).all(), 'parameters differ between ranks'


def check_equivalence(out):
    """N ranks on shards: parameters, history and metrics as one process on the whole
    batch (the test compares rank 0's file with its own single-process run)."""
    est, history = fit_run()
    _assert_params_same_everywhere(est.net)
    values = {k: v for k, v in history.history.items() if k != 'epoch_time'}
    _same_everywhere(values, 'history')
    extra = RankZeroOnly()
    extra.update(None, None)
    name, value = est.metric_value(extra)
    assert (name, value) == ('rank_answer', 1.0), (name, value)      # rank 0's value
    evaluated = est.evaluate(loaders(val_batch=4)[1])      # the cut without a merge
    clipped, _ = fit_run(**ACCUMULATE_CLIP)
    _assert_params_same_everywhere(clipped.net)
    # on a simulated device that is not the current one: every step under its device
    on_device, device_history = fit_run(quiet=True, ctx=sim(1))
    for k, v in _params(on_device.net).items():    # (the device's fused kernels round
        np.testing.assert_allclose(v, _params(est.net)[k], rtol=1e-5, atol=1e-5,  # apart)
                                   err_msg=k)
    assert device_history['validation accuracy'] == history['validation accuracy']
    if dist.rank() == 0:
        np.savez(os.path.join(out, 'clipped.npz'), **_params(clipped.net))
        np.savez(os.path.join(out, 'equivalence.npz'), **_params(est.net))
        with open(os.path.join(out, 'equivalence.json'), 'w') as f:
            json.dump({'history': values, 'evaluated': evaluated}, f)


class Interrupt(BatchEnd):
    """Raises KeyboardInterrupt on every rank after batch ``at`` (a kill, as close as a
    test can get without losing the job)."""

    def __init__(self, at):
        self.at = at

    def batch_end(self, estimator, *args, **kwargs):
        if estimator.progress.batches == self.at:
            raise KeyboardInterrupt


def resumable_estimator(seed):
    net = build_net(seed, dropout=0.3)
    xpnet.random.seed(100 + 7 * dist.rank() + seed)   # each rank its own dropout masks
    trainer = xpnet.Trainer(net.collect_params(), 'adam', {'learning_rate': 0.01},
                            kvstore='dist_sync')
    est = Estimator(net, xpnet.loss.SoftmaxCrossEntropyLoss(), trainer=trainer)
    est.logger.setLevel('WARNING')
    return est


def resumable_fit(est, model_dir, interrupt=None, resume=False):
    # the checkpoint at batch 4 is in the middle of an accumulation window (batches 4-5)
    handlers = [CheckpointHandler(model_dir, batch_period=2, resume_from_checkpoint=resume,
                                  monitor=est.train_metrics[0], save_best=True),
                EarlyStoppingHandler(est.train_metrics[1], patience=5, restore_best=True),
                GradientUpdateHandler(accumulate=2)]
    if interrupt:
        handlers.append(Interrupt(interrupt))
    est.fit(loaders()[0], epochs=3, event_handlers=handlers)
    return handlers[0]


def check_resume(out):
    """Interrupted and resumed under N ranks == uninterrupted, bit for bit, whether the
    same objects continue or new ones (other initial weights) start from the files; only
    rank 0 writes, and the other ranks resume from what rank 0 sends (their directories
    stay empty)."""
    r = dist.rank()
    full = resumable_estimator(0)
    resumable_fit(full, os.path.join(out, 'full', f'rank{r}'))
    cut, fresh = (os.path.join(out, run, f'rank{r}') for run in ('cut', 'fresh'))
    same = resumable_estimator(0)
    try:
        resumable_fit(same, cut, interrupt=5)
        raise AssertionError('the interrupt did not stop training')
    except KeyboardInterrupt:
        pass
    if r == 0:
        shutil.copytree(cut, fresh)
    for est, model_dir in ((same, cut), (resumable_estimator(9), fresh)):
        handler = resumable_fit(est, model_dir, resume=True)
        assert handler.resumed_from == 'model-epoch1batch4', handler.resumed_from
        for k, v in _params(full.net).items():
            np.testing.assert_array_equal(v, _params(est.net)[k], err_msg=k)
        assert est.history.history['training accuracy'] == \
            full.history.history['training accuracy']
        _assert_params_same_everywhere(est.net)
    for run in ('full', 'cut', 'fresh'):
        if r > 0:
            assert not os.path.exists(os.path.join(out, run, f'rank{r}')), run
    if r == 0:
        names = sorted(os.listdir(cut))
        stems = sorted({n.rsplit('.', 1)[0] for n in names})
        assert names == sorted(f'{s}.{e}' for s in stems
                               for e in ('params', 'progress', 'states')), names
        assert stems == ['model-best', 'model-epoch0batch3', 'model-epoch1batch4',
                         'model-epoch1batch6', 'model-epoch2batch8', 'model-epoch2batch9'], stems


class StopOnOneRank(BatchEnd):
    def batch_end(self, estimator, *args, **kwargs):
        return dist.rank() == dist.size() - 1 and estimator.progress.batches == 2


class NaNOnOneRank(BatchProcessor):
    def fit_batch(self, estimator, train_batch, batch_axis=0):
        data, label, pred, loss = super().fit_batch(estimator, train_batch, batch_axis)
        if dist.rank() == dist.size() - 1 and estimator.progress.batches == 4:
            loss = [l * float('nan') for l in loss]
        return data, label, pred, loss


def check_stops(out):
    """Every rank stops on the same step: a handler stopping one rank, early stopping,
    and a non-finite loss on one rank (after which rank 0 saves the last batch)."""
    train, val = loaders()

    def estimator(**kwargs):
        net = build_net(0)
        trainer = xpnet.Trainer(net.collect_params(), 'sgd', {'learning_rate': 0.1},
                                kvstore='dist_sync')
        est = Estimator(net, xpnet.loss.SoftmaxCrossEntropyLoss(), trainer=trainer, **kwargs)
        est.logger.setLevel('WARNING')
        return est

    est = estimator()
    est.fit(train, epochs=3, event_handlers=[StopOnOneRank()])
    _same_everywhere(est.progress.batches, 'batches')
    assert est.progress.batches == 2, est.progress
    est = estimator()
    stop = EarlyStoppingHandler(est.val_metrics[0], min_delta=2.0)     # never improves
    est.fit(train, val, epochs=5, event_handlers=[stop])
    _same_everywhere((est.progress.epochs_done, stop.stopped_epoch), 'early stopping')
    assert stop.stopped_epoch == 1 and est.progress.epochs_done == 2
    est = estimator(batch_processor=NaNOnOneRank())
    model_dir = os.path.join(out, 'nan', f'rank{dist.rank()}')
    try:
        est.fit(train, epochs=3, event_handlers=[CheckpointHandler(model_dir, epoch_period=None)])
        raise AssertionError('a non-finite loss must stop training')
    except FloatingPointError as err:
        assert f'on rank(s) [{dist.size() - 1}]' in str(err), err
    assert est.exception_on_every_rank and est.progress.batches == 4
    if dist.rank() == 0:      # the interrupt checkpoint of the last completed batch
        assert sorted(os.listdir(model_dir)) == [
            'model-epoch1batch4.params', 'model-epoch1batch4.progress',
            'model-epoch1batch4.states'], os.listdir(model_dir)


def check_defaults(out):
    """Under MPI the Estimator initializes the net alike on every rank, makes a
    distributed default trainer, refuses a local one; lr_find ends together on every
    rank; an unsharded validation loader gives the same values (with a warning)."""
    xpnet.random.seed(dist.rank())              # every rank draws other weights
    net = nn.Sequential()
    net.add(nn.Dense(8, activation='relu', in_units=6), nn.Dense(3, in_units=8))
    est = Estimator(net, xpnet.loss.SoftmaxCrossEntropyLoss())
    est.logger.setLevel('WARNING')
    _assert_params_same_everywhere(net)
    assert est.trainer._dist is not None and est.context == [dist.default_context()]
    local = xpnet.Trainer(net.collect_params(), 'sgd')
    try:
        Estimator(net, xpnet.loss.SoftmaxCrossEntropyLoss(), trainer=local)
        raise AssertionError('a trainer without a distributed kvstore must be refused')
    except ValueError as err:
        assert "kvstore='dist_sync'" in str(err)
    train, val = loaders()
    found = est.lr_find(train, num_batches=6)
    _same_everywhere([found.lrs, found.losses], 'lr_find')
    x, y = data(15, 1)
    whole = DataLoader(ArrayDataset(x, y), batch_size=4)
    est.fit(whole, epochs=1)                    # warns: every rank trains on everything
    a, b = est.evaluate(whole), est.evaluate(val)       # loss sums in another order
    np.testing.assert_allclose(list(a.values()), list(b.values()), rtol=1e-6)


CHECKS = {name[len('check_'):]: fn for name, fn in globals().items()
          if name.startswith('check_')}


if __name__ == '__main__':
    dist.init(timeout=60)
    target = sys.argv[1]
    for name in sys.argv[2:]:
        CHECKS[name](target)
        dist.barrier()
        if dist.rank() == 0:
            print(f'OK {name}', flush=True)
