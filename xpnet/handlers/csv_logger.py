"""CSVLoggerHandler: one CSV row per epoch with every metric and the learning rate."""
import math
import os
import re
import tempfile

from .._events import EpochEnd, TrainBegin

__all__ = ['CSVLoggerHandler']


def _cell(value):
    value = float(value)
    return '' if math.isnan(value) else repr(value)


def _write_atomically(path, text):
    """Replace ``path`` by ``text``: a temporary file in the same directory, fsync'ed and
    renamed, so a reader (or a crash) sees the old file or the new one, never half a row."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f'.{os.path.basename(path)}.', suffix='.tmp',
                               dir=directory)
    try:
        with os.fdopen(fd, 'w', newline='') as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise


class CSVLoggerHandler(TrainBegin, EpochEnd):
    """Writes one row per epoch to the CSV file ``path``: ``epoch``, every training metric,
    every validation metric (empty in epochs without validation) and ``learning_rate``,
    as recorded in ``estimator.history`` (Keras' ``CSVLogger``).

    The file is rewritten atomically at each epoch end, so it never holds half a row. A
    resumed run (``CheckpointHandler(resume_from_checkpoint=True)``) keeps the rows of the
    epochs the checkpoint covers, drops any later rows the interrupted run wrote, and
    continues: the file then equals that of an uninterrupted run. Otherwise the file is
    started afresh, or with ``append=True`` extended. Only the writing process
    (``estimator.is_writer``) writes.

    Args:
        path: the CSV file.
        append: keep the rows already in ``path`` and add this run's after them (its header
            must match).

    Example::

        est.fit(train, val, epochs=20, event_handlers=[CSVLoggerHandler('runs/log.csv')])
    """

    def __init__(self, path, append=False):
        self.path = os.fspath(path)
        self.append = bool(append)
        self._columns = None
        self._lines = None

    def train_begin(self, estimator, *args, **kwargs):
        self._columns = self._lines = None
        if estimator.is_writer:
            self._remove_leftovers()

    def epoch_end(self, estimator, *args, **kwargs):
        if estimator.is_writer:
            # after the epoch is recorded in the history (and validated)
            estimator.after_event(lambda: self._write_row(estimator))

    def _remove_leftovers(self):
        directory = os.path.dirname(os.path.abspath(self.path))
        pattern = re.compile(r'\.' + re.escape(os.path.basename(self.path)) +
                             r'\.[A-Za-z0-9_]+\.tmp$')
        if os.path.isdir(directory):
            for name in os.listdir(directory):
                if pattern.match(name):
                    os.remove(os.path.join(directory, name))

    def _header(self, estimator):
        from .validation import ValidationHandler
        # names only: no need to combine the ranks' values (this runs on the writer alone)
        names = list(estimator.metric_values(estimator.train_metrics, local=True))
        if any(isinstance(h, ValidationHandler) for h in estimator.event_handlers):
            names += list(estimator.metric_values(estimator.val_metrics, local=True))
        return ['epoch'] + names + ['learning_rate']

    def _start(self, estimator, first_epoch):
        """The header and the rows to keep, for the first row of this run."""
        self._columns = self._header(estimator)
        header = ','.join(self._columns)
        resumed = first_epoch > 0
        if not (resumed or self.append) or not os.path.exists(self.path):
            self._lines = [header]
            return
        with open(self.path, newline='') as f:
            lines = f.read().splitlines()
        if lines and lines[0] != header:
            raise ValueError(f'CSVLoggerHandler: {self.path} has the columns {lines[0]!r} but '
                             f'this run logs {header!r}; write to another path')
        lines = lines or [header]
        if resumed:      # rows the interrupted run wrote after its checkpoint go
            while len(lines) > 1 and int(lines[-1].split(',', 1)[0]) >= first_epoch:
                lines.pop()
        self._lines = lines

    def _write_row(self, estimator):
        history = estimator.history
        epoch = history.epoch[-1]
        if self._lines is None:
            self._start(estimator, epoch)
        values = history.last()
        row = [str(epoch)] + [_cell(values.get(name, math.nan)) for name in self._columns[1:]]
        self._lines.append(','.join(row))
        _write_atomically(self.path, '\n'.join(self._lines) + '\n')
