"""CheckpointHandler: file names, rotation, best, corrupt checkpoints, NaN refusal, files
never lost (leftovers, unreadable files, unwritable directories, a full disk)."""
import errno
import os
import re
import tempfile

import numpy as np
import pytest

import xpnet
from xpnet.handlers import BatchEnd, CheckpointHandler, EpochEnd

from estimator_helpers import Recorder, make_data, make_estimator, make_loader, params_of


def _files(d):
    return sorted(f for f in os.listdir(d))


def _stems(d, prefix='model'):
    pat = re.compile(re.escape(prefix) + r'-(epoch\d+batch\d+|best)\.progress$')
    return sorted(m.group(1) for m in map(pat.match, os.listdir(d)) if m)


class Snapshots(EpochEnd, BatchEnd):
    """Parameters after every batch and epoch (runs after the update and after metrics)."""
    priority = 100

    def __init__(self):
        self.by_batches = {}

    def batch_end(self, est, *args, **kwargs):
        self.by_batches[est.progress.batches] = params_of(est.net)

    def epoch_end(self, est, *args, **kwargs):
        self.by_batches[est.progress.batches] = params_of(est.net)


def test_epoch_checkpoints_hold_params_and_trainer_state(tmp_path):
    est = make_estimator(optimizer_params={'momentum': 0.9})
    snap = Snapshots()
    est.fit(make_loader(), epochs=2, event_handlers=[CheckpointHandler(str(tmp_path)), snap])
    assert _files(tmp_path) == ['model-epoch0batch3.params', 'model-epoch0batch3.progress',
                                'model-epoch0batch3.states', 'model-epoch1batch6.params',
                                'model-epoch1batch6.progress', 'model-epoch1batch6.states']
    other = make_estimator(optimizer_params={'momentum': 0.9})
    other.net.load_parameters(str(tmp_path / 'model-epoch0batch3.params'))
    for k, v in params_of(other.net).items():
        np.testing.assert_array_equal(v, snap.by_batches[3][k])
    other.trainer.load_states(str(tmp_path / 'model-epoch0batch3.states'))


def test_batch_period_names_count_batches_trained(tmp_path):
    est = make_estimator()
    handler = CheckpointHandler(str(tmp_path), model_prefix='m', epoch_period=None,
                                batch_period=2)
    est.fit(make_loader(), batches=7, event_handlers=[handler])   # 3 batches per epoch
    assert _stems(tmp_path, 'm') == ['epoch0batch2', 'epoch1batch4', 'epoch1batch6']
    assert handler.saved_checkpoints == ['m-epoch0batch2', 'm-epoch1batch4', 'm-epoch1batch6']


def test_epoch_period(tmp_path):
    est = make_estimator()
    est.fit(make_loader(), epochs=5, event_handlers=[CheckpointHandler(str(tmp_path),
                                                                       epoch_period=2)])
    assert _stems(tmp_path) == ['epoch1batch6', 'epoch3batch12']


def test_rotation_deletes_exact_names_only(tmp_path):
    x, y = make_data(n=48)
    est = make_estimator()
    handler = CheckpointHandler(str(tmp_path), epoch_period=None, batch_period=1,
                                max_checkpoints=9)
    est.fit(make_loader(x, y, batch_size=4), batches=10, event_handlers=[handler])
    # Gluon's prefix match deleted epoch0batch10 together with epoch0batch1
    assert _stems(tmp_path) == sorted(f'epoch0batch{b}' for b in range(2, 11))
    assert len(_files(tmp_path)) == 27


def test_rotation_includes_earlier_runs_and_keeps_best(tmp_path):
    est = make_estimator()
    est.fit(make_loader(), val_data=make_loader(), epochs=3,
            event_handlers=[CheckpointHandler(str(tmp_path), monitor=est.val_metrics[1],
                                              save_best=True)])
    assert _stems(tmp_path) == ['best', 'epoch0batch3', 'epoch1batch6', 'epoch2batch9']
    est2 = make_estimator()
    est2.fit(make_loader(), batches=2,
             event_handlers=[CheckpointHandler(str(tmp_path), epoch_period=None,
                                               batch_period=1, max_checkpoints=2)])
    assert _stems(tmp_path) == ['best', 'epoch0batch1', 'epoch0batch2']


def test_save_best_tracks_the_monitor(tmp_path):
    est = make_estimator(lr=0.5)
    x, y = make_data(n=96)
    y = (x[:, 0] > 0.5).astype(np.float32)
    snap = Snapshots()
    handler = CheckpointHandler(str(tmp_path), monitor=est.val_metrics[0], save_best=True,
                                max_checkpoints=1)
    assert handler.mode == 'max'
    history = est.fit(make_loader(x, y), val_data=make_loader(x, y), epochs=6,
                      event_handlers=[handler, snap])
    acc = history['validation accuracy']
    best_epoch = int(np.argmax(acc))                   # first epoch reaching the maximum
    assert handler.best == pytest.approx(acc[best_epoch])
    other = make_estimator()
    other.net.load_parameters(str(tmp_path / 'model-best.params'))
    expected = snap.by_batches[6 * (best_epoch + 1)]
    for k, v in params_of(other.net).items():
        np.testing.assert_array_equal(v, expected[k])
    assert _stems(tmp_path) == ['best', 'epoch5batch36']


def test_verbose_logs(tmp_path, capsys):
    est = make_estimator(quiet=False)
    est.fit(make_loader(), val_data=make_loader(), epochs=2, event_handlers=[
        CheckpointHandler(str(tmp_path), monitor=est.val_metrics[1], save_best=True, verbose=1,
                          mode='min')])
    out = capsys.readouterr().out
    assert f'[Epoch 0] CheckpointHandler: trained total 3 batches, saving model at {tmp_path} ' \
           'with prefix: model-epoch0batch3' in out
    assert re.search(r'\[Epoch 0\] CheckpointHandler: validation softmaxcrossentropyloss '
                     r'improved from inf to [0-9.]+, updating best model at .* with prefix: '
                     r'model-best', out)
    assert re.search(r'\[Epoch 1\] CheckpointHandler: validation softmaxcrossentropyloss '
                     r'(improved from [0-9.]+ to|did not improve from) [0-9.]+', out)


def test_checkpoint_includes_handler_decisions_of_the_same_epoch(tmp_path):
    """A checkpoint is written after every handler of the event, whatever their order."""
    est = make_estimator()
    stop = xpnet.handlers.EarlyStoppingHandler(est.train_metrics[1], patience=10)
    handler = CheckpointHandler(str(tmp_path))
    est.fit(make_loader(), epochs=2, event_handlers=[handler, stop])   # checkpoint listed first
    meta, _ = handler.read('model-epoch1batch6')
    saved = meta['training']['handlers']['EarlyStoppingHandler']
    assert saved['monitor']['best'] == pytest.approx(stop.best)
    assert saved['best_epoch'] == stop.best_epoch
    assert meta['training']['progress']['epoch'] == 2
    assert meta['training']['history']['epoch'] == [0, 1]


def test_no_temporary_files_left(tmp_path):
    est = make_estimator()
    est.fit(make_loader(), batches=4, event_handlers=[
        CheckpointHandler(str(tmp_path), batch_period=1, max_checkpoints=2)])
    assert not [f for f in os.listdir(tmp_path) if f.endswith('.tmp')]


def test_refuses_to_write_nan_weights(tmp_path):
    class Poison(BatchEnd):
        priority = -1500            # after the update, before the checkpoint is written

        def batch_end(self, est, *args, **kwargs):
            if est.progress.batches == 2:
                p = est.net.collect_params()['1.bias']
                p.set_data(np.full(p.shape, np.nan, np.float32))

    est = make_estimator()
    with pytest.raises(FloatingPointError, match=r"parameter '1.bias' holds NaN.*refusing to "
                                                 r'write checkpoint model-epoch0batch2'):
        est.fit(make_loader(), epochs=1, event_handlers=[
            CheckpointHandler(str(tmp_path), batch_period=1), Poison()])
    assert _stems(tmp_path) == ['epoch0batch1']


def _corrupt(path, how):
    if how == 'truncate':
        with open(path, 'r+b') as f:
            f.truncate(os.path.getsize(path) // 2)
    elif how == 'garbage':
        with open(path, 'r+b') as f:
            f.seek(os.path.getsize(path) // 2)
            f.write(b'\x00garbage\xff' * 4)
    else:
        os.remove(path)


@pytest.mark.parametrize('ext, how, reason', [
    ('params', 'truncate', 'is truncated or corrupt'),
    ('states', 'garbage', 'is truncated or corrupt'),
    ('progress', 'truncate', 'is truncated or corrupt'),
    ('progress', 'remove', 'is missing: the checkpoint was not completed'),
    ('params', 'remove', 'is missing'),
])
def test_corrupt_newest_checkpoint_falls_back(tmp_path, capsys, ext, how, reason):
    est = make_estimator()
    est.fit(make_loader(), epochs=3, event_handlers=[CheckpointHandler(str(tmp_path))])
    _corrupt(str(tmp_path / f'model-epoch2batch9.{ext}'), how)
    est2 = make_estimator(quiet=False)
    handler = CheckpointHandler(str(tmp_path), resume_from_checkpoint=True)
    est2.fit(make_loader(), epochs=3, event_handlers=[handler])
    out = capsys.readouterr().out
    bad = os.path.join(str(tmp_path), f'model-epoch2batch9.{ext}')
    assert f'CheckpointHandler: skipping checkpoint model-epoch2batch9: {bad} {reason}' in out
    assert handler.resumed_from == 'model-epoch1batch6'
    assert 'resumed from checkpoint model-epoch1batch6 (the end of epoch 1, 6 batches ' \
           'trained), 1 epochs left to train' in out
    assert est2.progress.epochs_done == 3 and est2.history.epoch == [0, 1, 2]


def test_resume_without_checkpoints_trains_from_scratch(tmp_path, capsys):
    est = make_estimator(quiet=False)
    handler = CheckpointHandler(str(tmp_path / 'new'), resume_from_checkpoint=True)
    est.fit(make_loader(), epochs=1, event_handlers=[handler])
    out = capsys.readouterr().out
    assert 'no valid checkpoint found' in out and handler.resumed_from is None
    assert est.progress.epochs_done == 1


def test_resume_of_a_finished_run_trains_nothing(tmp_path):
    est = make_estimator()
    est.fit(make_loader(), epochs=2, event_handlers=[CheckpointHandler(str(tmp_path))])
    final = params_of(est.net)
    est2 = make_estimator()
    from estimator_helpers import Recorder
    rec = Recorder()
    est2.fit(make_loader(), epochs=2, event_handlers=[
        CheckpointHandler(str(tmp_path), resume_from_checkpoint=True), rec])
    assert rec.names() == ['train_begin', 'train_end']
    for k, v in params_of(est2.net).items():
        np.testing.assert_array_equal(v, final[k])
    assert len(est2.history) == 2


def test_read_reports_foreign_files(tmp_path):
    handler = CheckpointHandler(str(tmp_path))
    (tmp_path / 'model-epoch0batch1.progress').write_bytes(b'not a zip file')
    with pytest.raises(xpnet.handlers.CheckpointError, match='model-epoch0batch1.progress is '
                                                             'truncated or corrupt'):
        handler.read('model-epoch0batch1')
    assert handler.checkpoints() == ['model-epoch0batch1']


# ---- checkpoints never lose data --------------------------------------------------------------


def _record_temp_names(monkeypatch):
    """The temporary names the real writer (serialization.save_npz) uses."""
    names = []
    real = tempfile.mkstemp

    def spy(*args, **kwargs):
        fd, path = real(*args, **kwargs)
        names.append(os.path.basename(path))
        return fd, path
    monkeypatch.setattr(tempfile, 'mkstemp', spy)
    return names


def test_leftovers_of_killed_saves_are_removed_and_nothing_else(tmp_path, monkeypatch):
    names = _record_temp_names(monkeypatch)
    make_estimator().fit(make_loader(), epochs=1, event_handlers=[
        CheckpointHandler(str(tmp_path), save_best=False)])
    monkeypatch.undo()
    own = [n for n in names if n.startswith('.model-epoch0batch3.')]
    assert len(own) == 3                      # params, states, progress
    foreign = ['.other.tmp', 'model-epoch0batch3.params.tmp', '.model.params.abc.tmp',
               '.mine-epoch0batch3.params.abcdefgh.tmp', 'notes.txt']
    for n in own + foreign:                   # what 20 kills mid-save would leave behind
        (tmp_path / n).write_bytes(b'partial')
    make_estimator().fit(make_loader(), epochs=1, event_handlers=[
        CheckpointHandler(str(tmp_path))])
    left = set(os.listdir(tmp_path))
    assert not left & set(own) and set(foreign) <= left


def test_unreadable_checkpoints_are_never_deleted(tmp_path):
    est = make_estimator()
    est.fit(make_loader(), epochs=3, event_handlers=[CheckpointHandler(str(tmp_path))])
    originals = {}
    for stem in ('model-epoch0batch3', 'model-epoch1batch6', 'model-epoch2batch9'):
        _corrupt(str(tmp_path / f'{stem}.progress'), 'truncate')    # maybe recoverable
        for ext in ('params', 'states', 'progress'):
            name = f'{stem}.{ext}'
            originals[name] = (tmp_path / name).read_bytes()
    # nothing readable: training starts from scratch, with names that collide
    handler = CheckpointHandler(str(tmp_path), max_checkpoints=1, resume_from_checkpoint=True)
    make_estimator().fit(make_loader(), epochs=4, event_handlers=[handler])
    assert handler.resumed_from is None
    for name, content in originals.items():     # moved aside, not overwritten
        assert (tmp_path / f'{name}.unreadable').read_bytes() == content, name
    # the rotation deleted only this run's own older checkpoints
    assert _stems(tmp_path) == ['epoch3batch12']


def test_a_directory_that_cannot_be_written_fails_at_train_begin(tmp_path, monkeypatch):
    (tmp_path / 'file').write_text('not a directory')
    rec = Recorder()
    with pytest.raises(OSError, match='CheckpointHandler: cannot write checkpoints to'):
        make_estimator().fit(make_loader(), epochs=1, event_handlers=[
            CheckpointHandler(str(tmp_path / 'file' / 'ckpt')), rec])
    assert 'batch_begin' not in rec.names()

    def denied(*args, **kwargs):
        raise PermissionError(errno.EACCES, 'Permission denied')
    monkeypatch.setattr(tempfile, 'mkstemp', denied)
    with pytest.raises(PermissionError, match=r"cannot write checkpoints to '.*': Permission "
                                              r'denied; choose a writable model_dir'):
        make_estimator().fit(make_loader(), epochs=1, event_handlers=[
            CheckpointHandler(str(tmp_path / 'ro'))])


@pytest.mark.skipif(not hasattr(os, 'geteuid') or os.geteuid() == 0,
                    reason='root may write to read-only directories')
def test_a_read_only_directory_fails_at_train_begin(tmp_path):
    ro = tmp_path / 'ro'
    ro.mkdir()
    ro.chmod(0o555)
    try:
        with pytest.raises(PermissionError, match='cannot write checkpoints to'):
            make_estimator().fit(make_loader(), epochs=1,
                                 event_handlers=[CheckpointHandler(str(ro))])
    finally:
        ro.chmod(0o755)


def _fail_writes_from(monkeypatch, first_failing_call):
    """A writer that runs out of space at its n-th file (after writing part of it)."""
    real = np.savez
    calls = [0]

    def savez(f, **arrays):
        calls[0] += 1
        if calls[0] >= first_failing_call:
            f.write(b'PK\x03\x04 part of a zip')
            raise OSError(errno.ENOSPC, 'No space left on device')
        return real(f, **arrays)
    monkeypatch.setattr(np, 'savez', savez)


@pytest.mark.parametrize('failing_file', [4, 5, 6])     # epoch 1's params, states, record
def test_a_full_disk_removes_the_partial_checkpoint_and_a_rerun_works(tmp_path, monkeypatch,
                                                                      failing_file):
    _fail_writes_from(monkeypatch, failing_file)
    est = make_estimator(quiet=True)
    with pytest.raises(OSError, match=r'could not write checkpoint model-epoch1batch6 in .* '
                                      r'\(the disk is full\); its partial files were removed'):
        est.fit(make_loader(), epochs=3, event_handlers=[CheckpointHandler(str(tmp_path))])
    assert _files(tmp_path) == ['model-epoch0batch3.params', 'model-epoch0batch3.progress',
                                'model-epoch0batch3.states']
    monkeypatch.undo()                        # space freed; no cleanup by hand
    handler = CheckpointHandler(str(tmp_path), resume_from_checkpoint=True)
    make_estimator().fit(make_loader(), epochs=3, event_handlers=[handler])
    assert handler.resumed_from == 'model-epoch0batch3'
    assert _stems(tmp_path) == ['epoch0batch3', 'epoch1batch6', 'epoch2batch9']


def test_gluon_counters(tmp_path):
    ckpt = CheckpointHandler(str(tmp_path))
    log = xpnet.handlers.LoggingHandler()
    seen = []

    class Probe(BatchEnd):
        priority = 100

        def batch_end(self, est, *args, **kwargs):
            seen.append((ckpt.current_epoch, ckpt.current_batch, log.batch_index))

    assert (ckpt.current_epoch, ckpt.current_batch, log.batch_index) == (0, 0, 0)
    est = make_estimator()
    early = xpnet.handlers.EarlyStoppingHandler(est.train_metrics[1], patience=10)
    est.fit(make_loader(), epochs=2, event_handlers=[ckpt, log, early, Probe()])
    assert seen == [(0, 1, 1), (0, 2, 2), (0, 3, 3), (1, 4, 1), (1, 5, 2), (1, 6, 3)]
    assert (ckpt.current_epoch, ckpt.current_batch, early.current_epoch) == (2, 6, 2)


def test_an_unreadable_best_checkpoint_is_moved_aside(tmp_path):
    (tmp_path / 'model-best.params').write_bytes(b'an older, unreadable best')
    est = make_estimator()
    est.fit(make_loader(), epochs=1, event_handlers=[
        CheckpointHandler(str(tmp_path), monitor=est.train_metrics[0], save_best=True)])
    assert (tmp_path / 'model-best.params.unreadable').read_bytes() == \
        b'an older, unreadable best'
    assert 'best' in _stems(tmp_path)


def test_a_process_that_is_not_the_writer_resumes_but_writes_nothing(tmp_path):
    """The hook distributed training specializes: only ``estimator.is_writer`` writes."""
    from xpnet.estimator import Estimator
    from xpnet.handlers import CSVLoggerHandler, TensorBoardHandler

    class OtherRank(Estimator):
        is_writer = False

    est = make_estimator()
    est.fit(make_loader(), epochs=1, event_handlers=[CheckpointHandler(str(tmp_path / 'c'))])
    before = _files(tmp_path / 'c')
    other = make_estimator()
    other.__class__ = OtherRank
    handler = CheckpointHandler(str(tmp_path / 'c'), resume_from_checkpoint=True)
    other.fit(make_loader(), epochs=2, event_handlers=[
        handler, CSVLoggerHandler(str(tmp_path / 'log.csv')),
        TensorBoardHandler(str(tmp_path / 'tb'))])
    assert handler.resumed_from == 'model-epoch0batch3' and other.progress.epochs_done == 2
    assert _files(tmp_path / 'c') == before
    assert sorted(os.listdir(tmp_path)) == ['c']
