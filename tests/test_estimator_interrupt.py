"""Checkpoint on interruption: when training stops on an exception or Ctrl+C, the
CheckpointHandler saves the last completed batch (unless that is its newest checkpoint)
and a run resumed from it ends bit-identical to one never interrupted. Shuffling,
dropout, Adam, a schedule, validation and early stopping make every piece of state matter.
"""
import os

import numpy as np
import pytest

import xpnet
from xpnet.estimator import BatchProcessor
from xpnet.handlers import (BatchEnd, CheckpointHandler, CSVLoggerHandler,
                            EarlyStoppingHandler, GradientUpdateHandler)

from estimator_helpers import make_data, make_estimator, make_loader, params_of

N, BS = 64, 16          # 4 batches per epoch


class InterruptingProcessor(BatchProcessor):
    """Raises (as Ctrl+C would) in the middle of training batch ``at`` (counted from 1):
    after its forward pass drew dropout masks and the loader yielded it."""

    def __init__(self, at, error=KeyboardInterrupt):
        self.at, self.error = at, error

    def fit_batch(self, estimator, train_batch, batch_axis=0):
        out = super().fit_batch(estimator, train_batch, batch_axis)
        if estimator.progress.batches + 1 == self.at:
            raise self.error('interrupted')
        return out


class InterruptingLoader:
    """Validation batches that raise at the ``at``-th batch of the ``epoch``-th pass."""

    def __init__(self, loader, epoch, at):
        self.loader, self.epoch, self.at, self.passes = loader, epoch, at, 0

    def __iter__(self):
        self.passes += 1
        for i, batch in enumerate(self.loader):
            if self.passes == self.epoch + 1 and i + 1 == self.at:
                raise KeyboardInterrupt('interrupted during validation')
            yield batch


def _setup(seed=7, interrupt_at=None, accumulate=1):
    xpnet.random.seed(seed)
    x, y = make_data(n=N, seed=3)
    sched = xpnet.lr_scheduler.FactorScheduler(step=3, factor=0.8, base_lr=0.02)
    processor = InterruptingProcessor(interrupt_at) if interrupt_at else None
    est = make_estimator(dropout=0.3, optimizer='adam', lr=0.02,
                         optimizer_params={'lr_scheduler': sched}, batch_processor=processor)
    train = make_loader(x, y, batch_size=BS, shuffle=True)
    val = make_loader(x, y, batch_size=32)
    handlers = [EarlyStoppingHandler(est.val_metrics[1], patience=100)]
    if accumulate > 1:
        handlers.append(GradientUpdateHandler(accumulate=accumulate))
    return est, train, val, handlers


def _reference(epochs=3, accumulate=1):
    est, train, val, handlers = _setup(accumulate=accumulate)
    est.fit(train, val, epochs=epochs, event_handlers=handlers)
    return est


def _assert_identical(est, ref):
    for k, v in params_of(est.net).items():
        np.testing.assert_array_equal(v, params_of(ref.net)[k], err_msg=k)
    assert est.history.epoch == ref.history.epoch
    for name in ref.history.keys():
        if name != 'epoch_time':
            np.testing.assert_array_equal(est.history[name], ref.history[name], err_msg=name)
    assert est.trainer.learning_rate == ref.trainer.learning_rate


def _resume(model_dir, epochs=3, accumulate=1, **ckpt):
    est, train, val, handlers = _setup(seed=999, accumulate=accumulate)  # streams restored
    handler = CheckpointHandler(model_dir, resume_from_checkpoint=True, **ckpt)
    est.fit(train, val, epochs=epochs, event_handlers=handlers + [handler])
    return est, handler


@pytest.mark.parametrize('at, saved', [
    (7, 'model-epoch1batch6'),          # mid-epoch: batch 3 of epoch 1 was running
    (5, 'model-epoch0batch4'),          # the first batch of an epoch: saved at its start
])
def test_ctrl_c_saves_the_last_completed_batch_and_resumes_exactly(tmp_path, capsys, at,
                                                                    saved):
    ref = _reference()
    est, train, val, handlers = _setup(interrupt_at=at)
    est.logger.setLevel('WARNING')
    with pytest.raises(KeyboardInterrupt):
        est.fit(train, val, epochs=3, event_handlers=handlers + [
            CheckpointHandler(str(tmp_path), epoch_period=None, batch_period=100)])
    assert f'training stopped by KeyboardInterrupt; saved checkpoint {saved}' in \
        capsys.readouterr().out
    resumed, handler = _resume(str(tmp_path), epoch_period=None, batch_period=100)
    assert handler.resumed_from == saved
    _assert_identical(resumed, ref)


def test_an_error_raised_during_validation_saves_the_epochs_batches(tmp_path):
    ref = _reference()
    est, train, val, handlers = _setup()
    with pytest.raises(KeyboardInterrupt):
        est.fit(train, InterruptingLoader(val, epoch=1, at=2), epochs=3,
                event_handlers=handlers + [CheckpointHandler(str(tmp_path))])
    # the epoch-end checkpoint of epoch 1 was never written: its last batch is saved
    stems = {f.rsplit('.', 1)[0] for f in os.listdir(tmp_path)}
    assert stems == {'model-epoch0batch4', 'model-epoch1batch8'}
    resumed, handler = _resume(str(tmp_path))
    assert handler.resumed_from == 'model-epoch1batch8'
    _assert_identical(resumed, ref)


def test_interrupt_inside_a_window_of_accumulated_gradients(tmp_path):
    ref = _reference(accumulate=3)
    est, train, val, handlers = _setup(interrupt_at=6, accumulate=3)
    with pytest.raises(KeyboardInterrupt):
        est.fit(train, val, epochs=3, event_handlers=handlers + [
            CheckpointHandler(str(tmp_path), epoch_period=None)])
    resumed, handler = _resume(str(tmp_path), accumulate=3, epoch_period=None)
    assert handler.resumed_from == 'model-epoch1batch5'      # 1 batch into its window
    _assert_identical(resumed, ref)


def test_no_duplicate_of_the_newest_checkpoint(tmp_path):
    est, train, val, handlers = _setup(interrupt_at=3)
    with pytest.raises(KeyboardInterrupt):
        est.fit(train, val, epochs=3, event_handlers=handlers + [
            CheckpointHandler(str(tmp_path), epoch_period=None, batch_period=1)])
    assert sorted({f.rsplit('.', 1)[0] for f in os.listdir(tmp_path)}) == \
        ['model-epoch0batch1', 'model-epoch0batch2']


class _RaiseAfterUpdate(BatchEnd):
    priority = 100

    def batch_end(self, est, *args, **kwargs):
        if est.progress.batches == 6:
            raise RuntimeError('a handler failed')


def test_no_checkpoint_when_stopped_after_a_batchs_update(tmp_path, capsys):
    """Inside batch_end, after the update, the state is neither batch 5's nor batch 6's."""
    est, train, val, handlers = _setup()
    est.logger.setLevel('WARNING')
    with pytest.raises(RuntimeError, match='a handler failed'):
        est.fit(train, val, epochs=3, event_handlers=handlers + [
            CheckpointHandler(str(tmp_path)), _RaiseAfterUpdate()])
    assert 'no consistent state to save (newest checkpoint: model-epoch0batch4)' in \
        capsys.readouterr().out
    assert {f.rsplit('.', 1)[0] for f in os.listdir(tmp_path)} == {'model-epoch0batch4'}
    assert est.resume_point is None


def test_a_non_finite_loss_saves_the_finite_weights_before_it(tmp_path):
    x, y = make_data(n=N, seed=3)
    x[40] = np.nan                                      # in the third batch (no shuffle)
    est = make_estimator()
    snapshots = []

    class Snap(BatchEnd):
        priority = 50

        def batch_end(self, e, *args, **kwargs):
            snapshots.append(params_of(e.net))

    with pytest.raises(FloatingPointError, match='non-finite training loss'):
        est.fit(make_loader(x, y, batch_size=BS), epochs=1,
                event_handlers=[CheckpointHandler(str(tmp_path)), Snap()])
    other = make_estimator()
    other.net.load_parameters(str(tmp_path / 'model-epoch0batch2.params'))
    for k, v in params_of(other.net).items():
        assert np.isfinite(v).all()
        np.testing.assert_array_equal(v, snapshots[-1][k])


def test_non_finite_weights_are_never_saved_on_interrupt(tmp_path, capsys):
    class Poison(BatchEnd):
        priority = -1500

        def batch_end(self, e, *args, **kwargs):
            if e.progress.batches == 2:
                p = e.net.collect_params()['1.bias']
                p.set_data(np.full(p.shape, np.nan, np.float32))

    est = make_estimator()
    est.logger.setLevel('WARNING')
    with pytest.raises(FloatingPointError, match='non-finite training loss'):
        est.fit(make_loader(), epochs=1, event_handlers=[CheckpointHandler(str(tmp_path)),
                                                         Poison()])
    assert os.listdir(tmp_path) == []
    assert "could not save a checkpoint after FloatingPointError: CheckpointHandler: " \
           "parameter '1.bias' holds NaN" in capsys.readouterr().out


def test_best_weights_are_not_restored_over_an_interrupted_run(tmp_path):
    est, train, val, _ = _setup(interrupt_at=10)
    stop = EarlyStoppingHandler(est.val_metrics[1], patience=100, restore_best=True)
    with pytest.raises(KeyboardInterrupt):
        est.fit(train, val, epochs=3, event_handlers=[stop, CheckpointHandler(str(tmp_path))])
    saved = make_estimator(dropout=0.3)
    saved.net.load_parameters(str(tmp_path / 'model-epoch2batch9.params'))
    for k, v in params_of(est.net).items():
        np.testing.assert_array_equal(v, params_of(saved.net)[k])
    assert stop.best_weights is not None


def test_csv_after_an_interrupted_and_resumed_run_equals_the_uninterrupted_one(tmp_path):
    ref_csv, csv = tmp_path / 'ref.csv', tmp_path / 'log.csv'
    est, train, val, handlers = _setup()
    est.fit(train, val, epochs=3, event_handlers=handlers + [CSVLoggerHandler(str(ref_csv))])
    est, train, val, handlers = _setup(interrupt_at=10)
    with pytest.raises(KeyboardInterrupt):       # epochs 0 and 1 logged, epoch 2 running
        est.fit(train, val, epochs=3, event_handlers=handlers + [
            CheckpointHandler(str(tmp_path / 'ckpt'), epoch_period=2),
            CSVLoggerHandler(str(csv))])
    assert len(csv.read_text().splitlines()) == 3
    est, train, val, handlers = _setup(seed=1)
    est.fit(train, val, epochs=3, event_handlers=handlers + [
        CheckpointHandler(str(tmp_path / 'ckpt'), epoch_period=2,
                          resume_from_checkpoint=True), CSVLoggerHandler(str(csv))])
    assert csv.read_text() == ref_csv.read_text()


def test_numpy_random_in_the_data_pipeline(tmp_path, capsys):
    """NumPy's global stream is copied at every batch once it was seen to move during an
    epoch; before that (in the first epoch) a mid-epoch state cannot be saved exactly."""
    from xpnet.data import ArrayDataset, DataLoader
    x, y = make_data(n=N, seed=3)

    def run(handlers, at=None, seed=7):
        xpnet.random.seed(seed)
        np.random.seed(seed)
        data = ArrayDataset(x, y).transform_first(
            lambda v: v + np.random.normal(0, 0.05, v.shape).astype(np.float32))
        est = make_estimator(dropout=0.3, optimizer='adam', lr=0.02,
                             batch_processor=InterruptingProcessor(at) if at else None)
        est.logger.setLevel('WARNING')
        est.fit(DataLoader(data, batch_size=BS, shuffle=True), epochs=3,
                event_handlers=handlers)
        return est

    ref = run([])
    with pytest.raises(KeyboardInterrupt):               # epoch 0: not saved
        run([CheckpointHandler(str(tmp_path / 'a'))], at=3)
    assert 'no consistent state to save' in capsys.readouterr().out
    with pytest.raises(KeyboardInterrupt):               # epoch 1: saved, exact
        run([CheckpointHandler(str(tmp_path / 'b'))], at=7)
    handler = CheckpointHandler(str(tmp_path / 'b'), resume_from_checkpoint=True)
    est = run([handler], seed=1)
    assert handler.resumed_from == 'model-epoch1batch6'
    for k, v in params_of(est.net).items():
        np.testing.assert_array_equal(v, params_of(ref.net)[k], err_msg=k)
