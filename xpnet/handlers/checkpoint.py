"""CheckpointHandler: crash-safe checkpoints that resume training exactly.

A checkpoint ``{prefix}-epoch{E}batch{B}`` is three files in ``model_dir``:

* ``.params``: the network's parameters (``net.load_parameters`` reads it);
* ``.states``: the trainer's state (``trainer.load_states`` reads it): optimizer
  momentum/moments, update counts, learning-rate scheduler;
* ``.progress``: written last, it marks the checkpoint complete: the training progress,
  the random states, the data loader's position within the epoch, the metric and handler
  states (early stopping's best and wait count, this handler's best) and the SHA-256 of
  the other two files.

Each file is written atomically (temporary file, fsync, rename), so a crash leaves either
the previous checkpoint or the new one, never a mix: a checkpoint whose ``.progress`` is
missing or unreadable, or whose ``.params``/``.states`` do not match the digests in it, is
reported by name and skipped when resuming, in favour of the previous valid one.

``E`` is the index (from 0) of the epoch the checkpoint was taken in and ``B`` the number
of batches trained so far: ``model-epoch0batch10`` after a first epoch of 10 batches.
The best checkpoint (``save_best``) is ``{prefix}-best.*`` and is never rotated away.
"""
import hashlib
import json
import math
import os
import re
import time
import warnings

import numpy as np

from ..estimator.event_handler import BatchEnd, EpochEnd, TrainBegin
from ..serialization import load_npz, save_npz
from ._monitor import Monitor
from ._period import check_period, every

__all__ = ['CheckpointHandler', 'CheckpointError']

_FORMAT = 'xpnet-checkpoint'
_VERSION = 1
_META = '__meta__'
_EXTS = ('params', 'states', 'progress')


class CheckpointError(ValueError):
    """A checkpoint is incomplete, corrupt or does not belong to its files."""


def _sha256(path):
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 20), b''):
            h.update(chunk)
    return h.hexdigest()


def _file_record(path):
    return {'name': os.path.basename(path), 'size': os.path.getsize(path),
            'sha256': _sha256(path)}


class CheckpointHandler(TrainBegin, BatchEnd, EpochEnd):
    """Saves checkpoints every ``epoch_period`` epochs and/or ``batch_period`` batches,
    keeps the newest ``max_checkpoints`` of them (plus the best one), and resumes from the
    newest valid one.

    A run interrupted after epoch k (or after any batch, with ``batch_period``) and
    started again with ``resume_from_checkpoint=True`` trains exactly the rest of the run
    and ends with the same parameters as an uninterrupted run with the same seed: the
    checkpoint holds the epoch's shuffling, the data position and every random state.
    Checkpoints are written once every handler of the event has run (see
    ``Estimator.after_event``), so they include e.g. the early-stopping decision of that
    epoch. A parameter holding NaN/inf is never written: saving raises
    ``FloatingPointError``.

    Args:
        model_dir: directory of the checkpoint files (created if missing).
        model_prefix: prefix of the file names.
        monitor: the metric deciding the best checkpoint (one of the estimator's metrics).
        verbose: 1 logs every save.
        save_best: also keep ``{prefix}-best.*``, the checkpoint with the best monitor value
            (checked at each save).
        mode: 'min', 'max' or 'auto' for the monitor (see EarlyStoppingHandler).
        epoch_period: epochs between checkpoints (None: none at epoch end).
        batch_period: batches between checkpoints (None: none at batch end).
        max_checkpoints: how many epoch/batch checkpoints to keep (the best is not counted
            and never deleted); older ones, including those of earlier runs, are removed.
        resume_from_checkpoint: at train begin, continue from the newest valid checkpoint
            in ``model_dir`` (or start from scratch if there is none).

    Example::

        ckpt = CheckpointHandler('runs/mnist', epoch_period=1, batch_period=500,
                                 resume_from_checkpoint=True)
        est.fit(train, val, epochs=10, event_handlers=[ckpt])   # rerun after a crash
    """

    def __init__(self, model_dir, model_prefix='model', monitor=None, verbose=0,
                 save_best=False, mode='auto', epoch_period=1, batch_period=None,
                 max_checkpoints=5, resume_from_checkpoint=False):
        if not isinstance(model_prefix, str) or not model_prefix or \
                os.sep in model_prefix or (os.altsep and os.altsep in model_prefix):
            raise ValueError('CheckpointHandler: model_prefix must be a non-empty file name '
                             f'prefix without directory separators, got {model_prefix!r}')
        self.model_dir = os.fspath(model_dir)
        self.model_prefix = model_prefix
        self.monitor = monitor
        self.verbose = verbose
        self.save_best = bool(save_best)
        self._monitor = None
        if self.save_best:
            if monitor is None:
                raise ValueError('CheckpointHandler: save_best=True needs a monitor: one of '
                                 'estimator.train_metrics or estimator.val_metrics')
            self._monitor = Monitor(monitor, mode, 0, None, 'CheckpointHandler')
        self.mode = self._monitor.mode if self._monitor else mode
        self.epoch_period = check_period(epoch_period, 'epoch_period', 'CheckpointHandler')
        self.batch_period = check_period(batch_period, 'batch_period', 'CheckpointHandler')
        self.max_checkpoints = check_period(max_checkpoints, 'max_checkpoints',
                                            'CheckpointHandler')
        self.resume_from_checkpoint = bool(resume_from_checkpoint)
        os.makedirs(self.model_dir, exist_ok=True)
        self.saved_checkpoints = []     # stems of epoch/batch checkpoints, oldest first
        self.resumed_from = None
        self._pattern = re.compile(re.escape(model_prefix) +
                                   r'-epoch(\d+)batch(\d+)\.(params|states|progress)$')

    @property
    def best(self):
        """The best monitor value saved so far (None without ``save_best``)."""
        return self._monitor.best if self._monitor else None

    # ---- events ---------------------------------------------------------------------------
    def train_begin(self, estimator, *args, **kwargs):
        if self._monitor is not None:
            self._monitor.reset()
        self.resumed_from = None
        # checkpoints already here (earlier runs) take part in the rotation, oldest first
        self.saved_checkpoints = [stem for _, stem in sorted(
            (self._age(stem), stem) for stem in self._stems())]
        if self.resume_from_checkpoint:
            self.resume(estimator)

    def batch_end(self, estimator, *args, **kwargs):
        if every(self.batch_period, estimator.progress.batches):
            self._schedule(estimator)

    def epoch_end(self, estimator, *args, **kwargs):
        if every(self.epoch_period, estimator.progress.epochs_done):
            self._schedule(estimator)

    def _schedule(self, estimator):
        p = estimator.progress
        epoch, batches = p.epoch, p.batches
        stem = '%s-epoch%dbatch%d' % (self.model_prefix, epoch, batches)
        estimator.after_event(lambda: self._save_checkpoint(estimator, stem, epoch, batches))

    # ---- saving ---------------------------------------------------------------------------
    def _path(self, stem, ext):
        return os.path.join(self.model_dir, f'{stem}.{ext}')

    def _save_checkpoint(self, estimator, stem, epoch, batches):
        _check_finite_params(estimator.net, stem)
        improved = False
        if self._monitor is not None:
            name, value = self._monitor.current()
            if math.isnan(value):
                warnings.warn(f'CheckpointHandler: skipping the best-checkpoint check because '
                              f'{name} has no value yet; pass one of estimator.train_metrics '
                              'or estimator.val_metrics as monitor', RuntimeWarning)
            elif self._monitor.is_improvement(value):
                previous, self._monitor.best, improved = self._monitor.best, value, True
        self._write(estimator, stem)
        if stem in self.saved_checkpoints:
            self.saved_checkpoints.remove(stem)
        self.saved_checkpoints.append(stem)
        if self.verbose > 0:
            estimator.logger.info('[Epoch %d] CheckpointHandler: trained total %d batches, '
                                  'saving model at %s with prefix: %s', epoch, batches,
                                  self.model_dir, stem)
        self._prune()
        if self._monitor is not None and not math.isnan(value):
            if improved:
                best_stem = self.model_prefix + '-best'
                self._write(estimator, best_stem)
                if self.verbose > 0:
                    estimator.logger.info('[Epoch %d] CheckpointHandler: %s improved from '
                                          '%0.5f to %0.5f, updating best model at %s with '
                                          'prefix: %s', epoch, name, previous, value,
                                          self.model_dir, best_stem)
            elif self.verbose > 0:
                estimator.logger.info('[Epoch %d] CheckpointHandler: %s did not improve from '
                                      '%0.5f, skipping updating best model', epoch, name,
                                      self._monitor.best)

    def _write(self, estimator, stem):
        params_file, states_file = self._path(stem, 'params'), self._path(stem, 'states')
        estimator.net.save_parameters(params_file)
        estimator.trainer.save_states(states_file)
        training, arrays = estimator.training_state()
        meta = {'format': _FORMAT, 'version': _VERSION, 'saved_at': time.time(),
                'checkpoint': stem, 'params': _file_record(params_file),
                'states': _file_record(states_file), 'training': training}
        arrays = dict(arrays)
        arrays[_META] = np.frombuffer(json.dumps(meta).encode('utf-8'), dtype=np.uint8)
        save_npz(self._path(stem, 'progress'), arrays)

    def _prune(self):
        if self.max_checkpoints is None:
            return
        while len(self.saved_checkpoints) > self.max_checkpoints:
            stem = self.saved_checkpoints.pop(0)
            # the marker first: a half-deleted checkpoint is then just an invalid one
            for ext in ('progress', 'params', 'states'):
                try:
                    os.remove(self._path(stem, ext))
                except FileNotFoundError:
                    pass

    def state_dict(self):
        return {'best': self._monitor.best} if self._monitor is not None else {}

    def load_state_dict(self, state):
        if self._monitor is not None and 'best' in state:
            self._monitor.best = float(state['best'])

    # ---- finding and reading checkpoints ----------------------------------------------------
    def _stems(self):
        stems = set()
        for fname in os.listdir(self.model_dir):
            m = self._pattern.match(fname)
            if m:
                stems.add(fname[:m.start(3) - 1])
        return stems

    def _age(self, stem):
        """Sort key, oldest first: when the checkpoint was written (its own record, else
        its newest file's mtime), then how far training had got."""
        epoch, batches = (int(g) for g in re.search(r'epoch(\d+)batch(\d+)$', stem).groups())
        try:
            written = float(self._read_marker(stem)[0]['saved_at'])
        except (CheckpointError, KeyError, TypeError, ValueError):
            paths = [self._path(stem, ext) for ext in _EXTS]
            written = max((os.path.getmtime(p) for p in paths if os.path.exists(p)),
                          default=0.0)
        return written, batches, epoch

    def checkpoints(self):
        """Stems of the epoch/batch checkpoints in ``model_dir``, newest first (valid or not)."""
        return [stem for _, stem in sorted(((self._age(s), s) for s in self._stems()),
                                           reverse=True)]

    def _read_marker(self, stem):
        marker = self._path(stem, 'progress')
        if not os.path.exists(marker):
            raise CheckpointError(f'{marker} is missing: the checkpoint was not completed')
        try:
            arrays = load_npz(marker, what='checkpoint record')
            meta = json.loads(bytes(arrays.pop(_META)).decode('utf-8'))
        except Exception as err:
            raise CheckpointError(f'{marker} is truncated or corrupt ({err})') from err
        if not isinstance(meta, dict) or meta.get('format') != _FORMAT:
            raise CheckpointError(f'{marker} is not an xpnet checkpoint record')
        return meta, arrays

    def read(self, stem):
        """``(meta, arrays)`` of checkpoint ``stem`` after checking it is complete and that
        its ``.params``/``.states`` are the files it was written with.

        Raises:
            CheckpointError: naming the file that is missing, truncated or corrupt.
        """
        meta, arrays = self._read_marker(stem)
        marker = self._path(stem, 'progress')
        for ext in ('params', 'states'):
            path, record = self._path(stem, ext), meta.get(ext, {})
            if not os.path.exists(path):
                raise CheckpointError(f'{path} is missing')
            if os.path.getsize(path) != record.get('size') or _sha256(path) != \
                    record.get('sha256'):
                raise CheckpointError(f'{path} is truncated or corrupt (its content does not '
                                      f'match the digest recorded in {os.path.basename(marker)})')
        return meta, arrays

    def resume(self, estimator):
        """Load the newest valid checkpoint into ``estimator`` (parameters, trainer,
        progress, random and loader state, handler states); skipped checkpoints are
        reported by name. Returns the stem loaded, or None when there was none."""
        for stem in self.checkpoints():
            try:
                meta, arrays = self.read(stem)
            except CheckpointError as err:
                estimator.logger.warning('CheckpointHandler: skipping checkpoint %s: %s',
                                         stem, err)
                continue
            estimator.net.load_parameters(self._path(stem, 'params'), ctx=estimator.context)
            estimator.trainer.load_states(self._path(stem, 'states'))
            estimator.load_training_state(meta['training'], arrays)
            self.resumed_from = stem
            p = estimator.progress
            if estimator.max_epoch is not None:
                left = '%d epochs' % max(estimator.max_epoch - p.epochs_done, 0)
            else:
                left = '%d batches' % max(estimator.max_batch - p.batches, 0)
            where = 'batch %d of epoch %d' % (p.epoch_batches, p.epoch) if p.mid_epoch \
                else 'the end of epoch %d' % (p.epoch - 1)
            estimator.logger.info('CheckpointHandler: resumed from checkpoint %s (%s, %d '
                                  'batches trained), %s left to train', stem, where,
                                  p.batches, left)
            return stem
        estimator.logger.info('CheckpointHandler: no valid checkpoint found in %s, training '
                              'from scratch', self.model_dir)
        return None


def _check_finite_params(net, stem):
    for name, p in net.collect_params().items():
        try:
            replicas = p.list_data()
        except RuntimeError:     # not initialized yet: nothing to check
            continue
        for d in replicas:
            with d.context.use():
                finite = bool(d.xp.isfinite(d.data).all())
            if not finite:
                raise FloatingPointError(
                    f'CheckpointHandler: parameter {name!r} holds NaN or inf; refusing to '
                    f'write checkpoint {stem}. Training has diverged: lower the learning '
                    'rate or clip gradients, and resume from the last checkpoint.')
