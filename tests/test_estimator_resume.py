"""Resume equals uninterrupted: a run interrupted after epoch k (or after any batch, with
batch-period checkpoints), resumed with ``resume_from_checkpoint=True``, trains exactly the
rest and ends with the same parameters, history and handler states as a run that was never
interrupted. Shuffling, dropout, Adam and a learning-rate schedule make every piece of
state matter."""
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import xpnet
from xpnet.handlers import (BatchBegin, BatchEnd, CheckpointHandler, EarlyStoppingHandler,
                            EpochBegin)

from estimator_helpers import make_data, make_estimator, make_loader, params_of

N, BS = 64, 16          # 4 batches per epoch


class Crash(BatchEnd):
    """Simulates a crash right after batch ``at`` (after any checkpoint of that batch would
    have been scheduled, so the newest checkpoint is an earlier one)."""

    def __init__(self, at):
        self.at = at

    def batch_end(self, est, *args, **kwargs):
        if est.progress.batches == self.at:
            raise KeyboardInterrupt(f'simulated crash after batch {self.at}')


class Labels(BatchBegin, EpochBegin):
    """Records each batch's labels (the data order) and the epochs begun."""

    def __init__(self):
        self.batches, self.epochs = [], []

    def epoch_begin(self, est, *args, **kwargs):
        self.epochs.append(est.progress.epoch)

    def batch_begin(self, est, *args, **kwargs):
        self.batches.append(kwargs['batch'][1].asnumpy().tolist())


def _setup(ctx=None, seed=7):
    xpnet.random.seed(seed)
    x, y = make_data(n=N, seed=3)
    sched = xpnet.lr_scheduler.FactorScheduler(step=3, factor=0.8, base_lr=0.02)
    est = make_estimator(ctx=ctx, dropout=0.3, optimizer='adam',
                         lr=0.02, optimizer_params={'lr_scheduler': sched})
    train = make_loader(x, y, batch_size=BS, shuffle=True)
    val = make_loader(x, y, batch_size=32)
    stop = EarlyStoppingHandler(est.val_metrics[1], patience=100)
    return est, train, val, stop


def _assert_same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-6, atol=1e-7, err_msg=k)


def _history_equal(h1, h2):
    assert h1.epoch == h2.epoch
    for name in h1.history:
        if name == 'epoch_time':
            continue
        np.testing.assert_allclose(h1[name], h2[name], rtol=1e-6, err_msg=name)


@pytest.mark.parametrize('ckpt, crash_at, resumed_from', [
    (dict(epoch_period=1), 6, 'model-epoch0batch4'),                        # after epoch 0
    (dict(epoch_period=None, batch_period=3), 8, 'model-epoch1batch6'),    # mid-epoch 1
    (dict(epoch_period=1, batch_period=5), 11, 'model-epoch2batch10'),     # both kinds
])
def test_resume_equals_uninterrupted(tmp_path, ckpt, crash_at, resumed_from):
    epochs = 4
    est, train, val, stop = _setup()
    ref_order = Labels()
    est.fit(train, val, epochs=epochs, event_handlers=[stop, ref_order])
    ref_params, ref_history = params_of(est.net), est.history
    ref_stop, ref_lr = stop.state_dict(), est.trainer.learning_rate

    est, train, val, stop = _setup()
    with pytest.raises(KeyboardInterrupt):
        est.fit(train, val, epochs=epochs,
                event_handlers=[CheckpointHandler(str(tmp_path), **ckpt), stop, Crash(crash_at)])

    est, train, val, stop = _setup(seed=12345)     # a different random stream: restored
    order = Labels()
    handler = CheckpointHandler(str(tmp_path), resume_from_checkpoint=True, **ckpt)
    est.fit(train, val, epochs=epochs, event_handlers=[handler, stop, order])
    assert handler.resumed_from == resumed_from
    done = int(resumed_from.split('batch')[1])
    # exactly the rest of the run, in the same data order
    assert order.batches == ref_order.batches[done:]
    assert order.epochs == ref_order.epochs[len(ref_order.epochs) - len(order.epochs):]
    _assert_same(params_of(est.net), ref_params)
    _history_equal(est.history, ref_history)
    assert stop.state_dict()['monitor'] == ref_stop['monitor']
    assert stop.wait == ref_stop['wait'] and stop.best_epoch == ref_stop['best_epoch']
    assert est.trainer.learning_rate == ref_lr < 0.02      # the schedule continued


def test_resume_on_device(tmp_path, ctx):
    est, train, val, stop = _setup(ctx)
    est.fit(train, epochs=2)
    ref = params_of(est.net)
    est, train, val, stop = _setup(ctx)
    with pytest.raises(KeyboardInterrupt):
        est.fit(train, epochs=2, event_handlers=[
            CheckpointHandler(str(tmp_path), batch_period=2), Crash(5)])
    est, train, val, stop = _setup(ctx, seed=99)
    est.fit(train, epochs=2, event_handlers=[
        CheckpointHandler(str(tmp_path), batch_period=2, resume_from_checkpoint=True)])
    _assert_same(params_of(est.net), ref)


def test_resume_continues_training_metrics_mid_epoch(tmp_path):
    est, train, val, stop = _setup()
    est.fit(train, epochs=2)
    ref = est.history['training accuracy']
    est, train, val, stop = _setup()
    with pytest.raises(KeyboardInterrupt):
        est.fit(train, epochs=2, event_handlers=[
            CheckpointHandler(str(tmp_path), batch_period=2), Crash(7)])
    est, train, val, stop = _setup()
    est.fit(train, epochs=2, event_handlers=[
        CheckpointHandler(str(tmp_path), batch_period=2, resume_from_checkpoint=True)])
    # epoch 1's accuracy covers all its batches, those before the crash included
    np.testing.assert_allclose(est.history['training accuracy'], ref, rtol=1e-7)


def test_resume_to_more_epochs_continues_the_run(tmp_path):
    est, train, val, stop = _setup()
    est.fit(train, epochs=3)
    ref = params_of(est.net)
    est, train, val, stop = _setup()
    est.fit(train, epochs=1, event_handlers=[CheckpointHandler(str(tmp_path))])
    est, train, val, stop = _setup()
    est.fit(train, epochs=3, event_handlers=[CheckpointHandler(str(tmp_path),
                                                               resume_from_checkpoint=True)])
    assert est.history.epoch == [0, 1, 2]
    _assert_same(params_of(est.net), ref)


def test_early_stopped_run_stays_stopped_on_resume(tmp_path):
    est, train, val, stop = _setup()
    stop = EarlyStoppingHandler(est.train_metrics[1], patience=0, mode='max')  # stops at once
    est.fit(train, epochs=5, event_handlers=[stop, CheckpointHandler(str(tmp_path))])
    assert est.progress.epochs_done == 2
    est2, train, val, _ = _setup()
    stop2 = EarlyStoppingHandler(est2.train_metrics[1], patience=0, mode='max')
    est2.fit(train, epochs=5, event_handlers=[stop2, CheckpointHandler(
        str(tmp_path), resume_from_checkpoint=True)])
    assert est2.progress.epochs_done == 2 and stop2.stop_training


_SCRIPT = textwrap.dedent('''
    import json, os, sys
    sys.path.insert(0, {tests!r})
    import numpy as np
    import xpnet
    from xpnet.handlers import BatchEnd, CheckpointHandler
    from estimator_helpers import make_data, make_estimator, make_loader, params_of

    model_dir, crash_at, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]

    class HardKill(BatchEnd):
        def batch_end(self, est, *args, **kwargs):
            if est.progress.batches == crash_at:
                os._exit(3)        # no train_end, no cleanup: like a power cut

    xpnet.random.seed(7)
    x, y = make_data(n=64, seed=3)
    est = make_estimator(dropout=0.3, optimizer='adam', lr=0.02, quiet=False)
    train = make_loader(x, y, batch_size=16, shuffle=True)
    handlers = [HardKill()]
    if model_dir != '-':
        handlers.append(CheckpointHandler(model_dir, epoch_period=None, batch_period=3,
                                          resume_from_checkpoint=True))
    est.fit(train, epochs=3, event_handlers=handlers)
    np.savez(out, **params_of(est.net))
    print(json.dumps(est.progress.state_dict()))
''')


def test_resume_in_a_fresh_process_after_a_hard_kill(tmp_path):
    script = tmp_path / 'train.py'
    script.write_text(_SCRIPT.format(tests=os.path.dirname(os.path.abspath(__file__))))
    model_dir = str(tmp_path / 'ckpt')

    def run(*args):
        return subprocess.run([sys.executable, str(script), *args], capture_output=True,
                              text=True, timeout=120)

    ref = run('-', '0', str(tmp_path / 'ref.npz'))
    assert ref.returncode == 0, ref.stderr
    killed = run(model_dir, '7', str(tmp_path / 'never.npz'))
    assert killed.returncode == 3 and not (tmp_path / 'never.npz').exists()
    resumed = run(model_dir, '0', str(tmp_path / 'resumed.npz'))
    assert resumed.returncode == 0, resumed.stderr
    assert 'resumed from checkpoint model-epoch1batch6 (batch 2 of epoch 1' in resumed.stdout
    assert json.loads(resumed.stdout.strip().splitlines()[-1])['batches'] == 12
    with np.load(tmp_path / 'ref.npz') as a, np.load(tmp_path / 'resumed.npz') as b:
        for k in a.files:
            np.testing.assert_allclose(a[k], b[k], rtol=1e-6, atol=1e-7)


def test_mid_epoch_resume_with_a_loader_without_state(tmp_path, capsys):
    x, y = make_data(n=N, seed=3)
    batches = [(x[i:i + BS], y[i:i + BS]) for i in range(0, N, BS)]     # a plain list
    est = make_estimator()
    with pytest.raises(KeyboardInterrupt):
        est.fit(batches, epochs=2, event_handlers=[
            CheckpointHandler(str(tmp_path), batch_period=3), Crash(7)])
    est = make_estimator(quiet=False)
    est.fit(batches, epochs=2, event_handlers=[
        CheckpointHandler(str(tmp_path), batch_period=3, resume_from_checkpoint=True)])
    out = capsys.readouterr().out
    assert 'after batch 2 of epoch 1 but train_data (list) cannot restore its position' in out
    assert est.progress.batches == 6 + 4 and est.progress.epochs_done == 2
