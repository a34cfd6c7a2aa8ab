"""LoggingHandler: Gluon's log lines at intervals, totals, and the tqdm progress bar."""
import logging
import re
import sys
import time

import pytest

from xpnet.handlers import BatchEnd, LoggingHandler

from estimator_helpers import make_estimator, make_loader

NUM = r'[0-9.]+'
METRICS = rf'training accuracy: {NUM}, training softmaxcrossentropyloss: {NUM}'


def _lines(capsys):
    return capsys.readouterr().out.splitlines()


def test_epoch_lines_match_gluon_formats(capsys):
    est = make_estimator(quiet=False)
    est.fit(make_loader(), epochs=2)
    lines = _lines(capsys)
    patterns = [
        r'Training begin: using optimizer SGD with current learning rate 0\.1000 $',
        r'Train for 2 epochs\.$',
        r'\[Epoch 0\] Begin, current learning rate: 0\.1000$',
        rf'\[Epoch 0\] Finished in {NUM}s, {METRICS}$',
        r'\[Epoch 1\] Begin, current learning rate: 0\.1000$',
        rf'\[Epoch 1\] Finished in {NUM}s, {METRICS}$',
        rf'Train finished using total \d+s with 2 epochs\. {METRICS}$',
    ]
    assert len(lines) == len(patterns)
    for line, pattern in zip(lines, patterns):
        assert re.match(pattern, line), (line, pattern)
    assert '\r' not in ''.join(lines)          # not a terminal: no progress bar


def test_batch_interval_lines(capsys):
    est = make_estimator(quiet=False)
    est.fit(make_loader(batch_size=8), batches=9,       # 6 batches per epoch
            event_handlers=[LoggingHandler(log_interval=2)])
    batch_lines = [l for l in _lines(capsys) if '][Batch' in l]
    found = [re.match(rf'\[Epoch (\d)\]\[Batch (\d)\]\[Samples (\d+)\] time/interval: {NUM}s '
                      rf'{METRICS}$', l).groups() for l in batch_lines]
    assert found == [('0', '1', '16'), ('0', '3', '32'), ('0', '5', '48'), ('1', '1', '64')]


def test_validation_lines_and_totals(capsys):
    est = make_estimator(quiet=False)
    est.fit(make_loader(), val_data=make_loader(), batches=3)
    lines = _lines(capsys)
    i = lines.index('Validation Begin')
    assert re.match(rf'\[Epoch 0\] Finished in {NUM}s, validation accuracy: {NUM}, validation '
                    rf'softmaxcrossentropyloss: {NUM}$', lines[i + 1])
    assert lines[i + 2].startswith('[Epoch 0] Finished in') and 'training accuracy' in lines[i + 2]
    assert re.match(r'Train for 3 batches\.$', lines[1])
    assert re.match(rf'Train finished using total \d+s with 1 epochs\. {METRICS}, validation '
                    rf'accuracy: {NUM}, validation softmaxcrossentropyloss: {NUM}$', lines[-1])


def test_given_metrics_and_priority(capsys):
    est = make_estimator(quiet=False)
    handler = LoggingHandler(metrics=[est.train_metrics[0]])
    assert LoggingHandler().priority == float('inf')
    est.fit(make_loader(), epochs=1, event_handlers=[handler])
    last = _lines(capsys)[-1]
    assert re.match(rf'Train finished using total \d+s with 1 epochs\. training accuracy: '
                    rf'{NUM}$', last)


def test_evaluate_logs_with_its_own_handler(capsys):
    est = make_estimator(quiet=False)
    est.evaluate(make_loader(), event_handlers=[LoggingHandler(log_interval=1)])
    lines = _lines(capsys)
    assert lines[0] == 'Validation Begin'
    # outside fit no epoch runs: the lines name none
    assert re.match(rf'\[Batch 2\]\[Samples 48\] time/interval: {NUM}s validation '
                    rf'accuracy: {NUM}, validation softmaxcrossentropyloss: {NUM}$', lines[3])
    assert re.match(rf'Validation finished in {NUM}s, validation accuracy: {NUM}, validation '
                    rf'softmaxcrossentropyloss: {NUM}$', lines[4])


def test_evaluate_after_fit_does_not_log_an_epoch_that_never_ran(capsys):
    est = make_estimator(quiet=False)
    est.fit(make_loader(), val_data=make_loader(), epochs=2)
    capsys.readouterr()
    est.evaluate(make_loader())
    lines = _lines(capsys)
    assert lines[0] == 'Validation Begin' and len(lines) == 2
    assert lines[1].startswith('Validation finished in ') and '[Epoch' not in lines[1]


def test_logging_to_a_file_uses_the_logging_api(tmp_path, capsys):
    est = make_estimator(quiet=False)
    log_file = tmp_path / 'train.log'
    est.logger.addHandler(logging.FileHandler(log_file))
    est.fit(make_loader(), epochs=1, event_handlers=[LoggingHandler(progress_bar=True)])
    text = log_file.read_text()
    assert 'Train for 1 epochs.' in text and '[Epoch 0] Finished in' in text
    assert '\r' not in text and 'samples/s' not in text      # the bar goes to stdout only


class _Slow(BatchEnd):
    """Makes each batch take long enough for tqdm (mininterval 0.1 s) to redraw."""
    priority = -100

    def batch_end(self, est, *args, **kwargs):
        time.sleep(0.11)


def test_progress_bar_forced_on(capsys):
    est = make_estimator(quiet=False)
    est.fit(make_loader(), epochs=1,
            event_handlers=[LoggingHandler(progress_bar=True), _Slow()])
    out = capsys.readouterr().out
    assert '\r' in out and 'Epoch 0' in out
    assert re.search(r'[123]/3 \[', out)                         # batches done / total
    assert re.search(r'\d+ samples/s, accuracy=[0-9.]+, loss=[0-9.]+', out)
    # the bar is gone before the epoch line, which stays intact
    assert re.search(rf'\n?\[Epoch 0\] Finished in {NUM}s, {METRICS}\n', out)


def test_progress_bar_auto_follows_the_terminal(capsys, monkeypatch):
    est = make_estimator(quiet=False)
    monkeypatch.setattr(sys.stdout, 'isatty', lambda: True, raising=False)
    est.fit(make_loader(), batches=2, event_handlers=[_Slow()])
    assert '\r' in capsys.readouterr().out
    est.fit(make_loader(), batches=2, event_handlers=[_Slow(), LoggingHandler(progress_bar=False)])
    assert '\r' not in capsys.readouterr().out


def test_progress_bar_without_loader_length(capsys):
    est = make_estimator(quiet=False)

    def batches():
        for data, label in make_loader():
            yield data, label

    class NoLen:
        def __iter__(self):
            return batches()

    est.fit(NoLen(), epochs=1, event_handlers=[LoggingHandler(progress_bar=True), _Slow()])
    out = capsys.readouterr().out
    assert re.search(r'Epoch 0: [123]batch', out)


def test_interval_lines_do_not_break_the_bar(capsys):
    est = make_estimator(quiet=False)
    est.fit(make_loader(), epochs=1,
            event_handlers=[LoggingHandler(log_interval=1, progress_bar=True), _Slow()])
    out = capsys.readouterr().out
    for b in range(3):
        assert re.search(rf'(^|\n|\r)\[Epoch 0\]\[Batch {b}\]\[Samples {16 * (b + 1)}\] '
                         rf'time/interval', out)


@pytest.mark.parametrize('bad', [0, -1, 2.5, 'batch'])
def test_bad_log_interval(bad):
    with pytest.raises(ValueError, match='log_interval'):
        LoggingHandler(log_interval=bad)
