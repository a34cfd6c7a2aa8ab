"""CSVLoggerHandler: one row per epoch with every metric and the learning rate, atomic
rewrites, append, and a file after a resume that equals the uninterrupted run's."""
import csv
import os

import numpy as np
import pytest

import xpnet
from xpnet.handlers import (BatchEnd, CheckpointHandler, CSVLoggerHandler,
                            ValidationHandler)

from estimator_helpers import make_data, make_estimator, make_loader


def _rows(path):
    with open(path, newline='') as f:
        return list(csv.reader(f))


def test_one_row_per_epoch_with_metrics_validation_and_learning_rate(tmp_path):
    path = tmp_path / 'log.csv'
    est = make_estimator()
    val = ValidationHandler(make_loader(), est.evaluate, epoch_period=2)
    est.fit(make_loader(), epochs=3, event_handlers=[CSVLoggerHandler(str(path)), val])
    rows = _rows(path)
    assert rows[0] == ['epoch', 'training accuracy', 'training softmaxcrossentropyloss',
                       'validation accuracy', 'validation softmaxcrossentropyloss',
                       'learning_rate']
    assert [r[0] for r in rows[1:]] == ['0', '1', '2']
    for row, epoch in zip(rows[1:], range(3)):
        for name, cell in zip(rows[0][1:], row[1:]):
            value = est.history[name][epoch]
            assert cell == ('' if np.isnan(value) else repr(value)), (name, epoch)
    assert rows[1][3] == '' and rows[2][3] != ''          # validation in epoch 1 only


def test_without_validation_there_are_no_validation_columns(tmp_path):
    path = tmp_path / 'log.csv'
    make_estimator().fit(make_loader(), epochs=1, event_handlers=[CSVLoggerHandler(path)])
    assert _rows(path)[0] == ['epoch', 'training accuracy', 'training softmaxcrossentropyloss',
                              'learning_rate']


def test_append_keeps_earlier_rows_and_the_default_starts_afresh(tmp_path):
    path = tmp_path / 'log.csv'
    make_estimator().fit(make_loader(), epochs=2, event_handlers=[CSVLoggerHandler(path)])
    make_estimator().fit(make_loader(), epochs=1,
                         event_handlers=[CSVLoggerHandler(path, append=True)])
    assert [r[0] for r in _rows(path)[1:]] == ['0', '1', '0']
    make_estimator().fit(make_loader(), epochs=1, event_handlers=[CSVLoggerHandler(path)])
    assert [r[0] for r in _rows(path)[1:]] == ['0']


def test_append_to_a_file_with_other_columns_is_refused(tmp_path):
    path = tmp_path / 'log.csv'
    path.write_text('epoch,loss\n0,1.0\n')
    with pytest.raises(ValueError, match=r"log.csv has the columns 'epoch,loss' but this run "
                                         r"logs 'epoch,training accuracy"):
        make_estimator().fit(make_loader(), epochs=1,
                             event_handlers=[CSVLoggerHandler(path, append=True)])
    assert path.read_text() == 'epoch,loss\n0,1.0\n'


def test_a_failed_write_keeps_the_previous_file_whole(tmp_path, monkeypatch):
    path = tmp_path / 'log.csv'
    handler = CSVLoggerHandler(path)
    est = make_estimator()
    real_replace = os.replace

    class FailSecondWrite(BatchEnd):
        def batch_end(self, e, *args, **kwargs):
            if e.progress.batches == 4:     # epoch 1: its row will fail to land
                monkeypatch.setattr(os, 'replace', lambda *a: (_ for _ in ()).throw(
                    OSError(28, 'No space left on device')))

    with pytest.raises(OSError, match='No space left'):
        est.fit(make_loader(), epochs=2, event_handlers=[handler, FailSecondWrite()])
    monkeypatch.setattr(os, 'replace', real_replace)
    assert [r[0] for r in _rows(path)[1:]] == ['0']              # whole rows only
    assert [f for f in os.listdir(tmp_path) if f.endswith('.tmp')] == []


def test_leftover_temporary_files_are_removed(tmp_path):
    path = tmp_path / 'log.csv'
    (tmp_path / '.log.csv.abc123_x.tmp').write_text('epoch,half a ro')
    (tmp_path / '.other.csv.abc123_x.tmp').write_text('not ours')
    make_estimator().fit(make_loader(), epochs=1, event_handlers=[CSVLoggerHandler(path)])
    assert sorted(os.listdir(tmp_path)) == ['.other.csv.abc123_x.tmp', 'log.csv']


class _FailAfterUpdate(BatchEnd):
    priority = 100

    def batch_end(self, e, *args, **kwargs):
        if e.progress.batches == 10:        # epoch 3: no consistent state to save
            raise RuntimeError('crash')


def test_resume_drops_rows_written_after_the_checkpoint(tmp_path):
    x, y = make_data(n=48)

    def run(handlers, seed=0):
        xpnet.random.seed(seed)
        est = make_estimator(dropout=0.3)
        est.fit(make_loader(x, y, shuffle=True), make_loader(x, y), epochs=4,
                event_handlers=handlers)

    run([CSVLoggerHandler(tmp_path / 'ref.csv')])
    path = tmp_path / 'log.csv'
    ckpt = str(tmp_path / 'ckpt')
    with pytest.raises(RuntimeError, match='crash'):
        run([CheckpointHandler(ckpt, epoch_period=2), CSVLoggerHandler(path),
             _FailAfterUpdate()])
    assert [r[0] for r in _rows(path)[1:]] == ['0', '1', '2']     # epoch 2 after the ckpt
    run([CheckpointHandler(ckpt, epoch_period=2, resume_from_checkpoint=True),
         CSVLoggerHandler(path)], seed=5)
    assert path.read_text() == (tmp_path / 'ref.csv').read_text()
