"""CheckpointHandler: crash-safe checkpoints that resume training exactly.

A checkpoint ``{prefix}-epoch{E}batch{B}`` is three files in ``model_dir``:

* ``.params``: the network's parameters (``net.load_parameters`` reads it);
* ``.states``: the trainer's state (``trainer.load_states`` reads it): optimizer
  momentum/moments, update counts, learning-rate scheduler;
* ``.progress``: written last, it marks the checkpoint complete: the training progress,
  the random states, the data loader's position within the epoch, the metric and handler
  states (early stopping's best and wait count, this handler's best) and the SHA-256 of
  the other two files.

Each file is written atomically (temporary file, fsync, rename) and a failed save removes
the files it wrote, so there is either the previous checkpoint or the new one, never a
mix: a checkpoint whose ``.progress`` is missing or unreadable, or whose
``.params``/``.states`` do not match the digests in it, is reported by name and skipped
when resuming, in favour of the previous valid one.

``E`` is the index (from 0) of the epoch the checkpoint was taken in and ``B`` the number
of batches trained so far: ``model-epoch0batch10`` after a first epoch of 10 batches.
The best checkpoint (``save_best``) is ``{prefix}-best.*`` and is never rotated away.

Files are never lost: the handler deletes only checkpoints it wrote in this run or
verified, at train begin, as complete checkpoints of its own; files it cannot read are
left alone (and moved to ``<file>.unreadable`` rather than overwritten by a checkpoint of
the same name).

In a distributed run (MPI) every rank runs the handler and takes part in each save (rank 0
gathers the other ranks' own state: random streams, data positions, metric states) but
only rank 0 writes, and only rank 0 reads when resuming: it sends the checkpoint to the
other ranks, so ``model_dir`` need not be shared between machines. At train end the ranks
wait for rank 0's files to be complete.
"""
import logging
import math
import os
import warnings

from .. import distributed as dist
from .._events import BatchEnd, EpochEnd, TrainBegin, TrainEnd
from ..serialization import load_npz
from ._checkpoint_files import CheckpointError, CheckpointFiles, stem_position
from ._counters import GluonCounters
from ._filters import PeriodFilter, check_period
from ._monitor import Monitor

__all__ = ['CheckpointHandler', 'CheckpointError']


class CheckpointHandler(GluonCounters, TrainBegin, BatchEnd, EpochEnd, TrainEnd):
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

    When training stops on an exception or Ctrl+C (``KeyboardInterrupt``), the handler
    saves a checkpoint of the last completed batch (``estimator.resume_point``) at train
    end, unless it is the newest checkpoint already, before the error propagates; resuming
    from it continues exactly. A directory that cannot be written fails at train begin; a
    save that fails (a full disk) removes its partial files and raises an ``OSError``
    saying so, and the next run needs no cleanup.

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
            and never deleted); older ones, including verified ones of earlier runs, are
            removed.
        resume_from_checkpoint: at train begin, continue from the newest valid checkpoint
            in ``model_dir`` (or start from scratch if there is none).

    Example::

        ckpt = CheckpointHandler('runs/mnist', epoch_period=1, batch_period=500,
                                 resume_from_checkpoint=True)
        est.fit(train, val, epochs=10, event_handlers=[ckpt])   # rerun after a crash
    """

    epoch_period = PeriodFilter('epoch_end')
    batch_period = PeriodFilter('batch_end')

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
        self.epoch_period = epoch_period
        self.batch_period = batch_period
        self.max_checkpoints = check_period(max_checkpoints, 'max_checkpoints',
                                            'CheckpointHandler')
        self.resume_from_checkpoint = bool(resume_from_checkpoint)
        self._files = CheckpointFiles(self.model_dir, model_prefix)
        try:        # as Gluon does; a directory that cannot be made is reported at train begin
            if dist.rank() == 0:        # the only writer of a distributed run
                os.makedirs(self.model_dir, exist_ok=True)
        except OSError:
            pass
        self.saved_checkpoints = []     # stems this handler may rotate away, oldest first
        self.resumed_from = None
        self._writable = set()          # stems it may overwrite: written or verified
        self._newest = None             # progress of the newest checkpoint (saved or loaded)
        self._started = False

    @property
    def best(self):
        """The best monitor value saved so far (None without ``save_best``)."""
        return self._monitor.best if self._monitor else None

    # ---- events ---------------------------------------------------------------------------
    def train_begin(self, estimator, *args, **kwargs):
        self._bind_progress(estimator)
        self._started = False
        if self._monitor is not None:
            self._monitor.reset()
        self.resumed_from = self._newest = None
        self.saved_checkpoints, self._writable = [], set()
        if estimator.is_writer:      # other processes of a distributed run only read
            removed = self._files.prepare()
            if removed:
                estimator.log('CheckpointHandler: removed %d temporary files of interrupted '
                              'saves in %s', len(removed), self.model_dir)
        # in a distributed run only rank 0 looks at the files (and sends what it resumes)
        valid = self._scan(estimator) if estimator.is_writer or dist.size() == 1 else []
        # verified checkpoints of earlier runs take part in the rotation, oldest first
        self.saved_checkpoints = [stem for stem, _ in reversed(valid)]
        self._writable = set(self.saved_checkpoints)
        self._started = True
        if self.resume_from_checkpoint:
            self._resume_from(estimator, valid)

    def batch_end(self, estimator, *args, **kwargs):
        self._schedule(estimator)

    def epoch_end(self, estimator, *args, **kwargs):
        self._schedule(estimator)

    def train_end(self, estimator, *args, **kwargs):
        if not self._started:
            return
        distributed = dist.size() > 1
        if estimator.exception is None:
            if distributed:
                dist.barrier()       # rank 0's files are complete for whoever reads them next
            return
        if not estimator.exception_on_every_rank:
            # gathering the other ranks' states would wait for ranks that are elsewhere
            estimator.log('CheckpointHandler: training stopped by %s on one rank of the '
                          'job: no checkpoint is saved now; resume from the newest one (%s)',
                          type(estimator.exception).__name__,
                          self.saved_checkpoints[-1] if self.saved_checkpoints else 'none',
                          level=logging.WARNING)
            return
        if estimator.is_writer or distributed:
            self._save_on_interrupt(estimator)

    def _schedule(self, estimator):
        # in a distributed run every rank takes part in the save (a collective)
        if not self._started or not (estimator.is_writer or dist.size() > 1):
            return
        p = estimator.progress
        stem = '%s-epoch%dbatch%d' % (self.model_prefix, p.epoch, p.batches)
        estimator.after_event(lambda: self._save_checkpoint(estimator, stem))

    # ---- saving ---------------------------------------------------------------------------
    def _write(self, estimator, stem, training):
        if self._files.exists(stem) and stem not in self._writable:
            try:
                self._files.read(stem)       # a complete checkpoint of ours: replaceable
            except CheckpointError as err:
                moved = self._files.move_aside(stem)
                estimator.log('CheckpointHandler: kept unreadable files of %s as %s (%s)',
                              stem, ', '.join(moved), err, level=logging.WARNING)
        self._files.write(stem, estimator, training)
        self._writable.add(stem)

    def _save_checkpoint(self, estimator, stem, point=None):
        _check_finite_params(estimator.net, stem)
        improved, name, value, previous = self._judge_best(estimator, point)
        training = estimator.training_state(point)     # every rank: a collective under MPI
        if estimator.is_writer:
            self._write(estimator, stem, training)
            if stem in self.saved_checkpoints:
                self.saved_checkpoints.remove(stem)
            self.saved_checkpoints.append(stem)
            self._prune()
        self._newest = dict(point.progress) if point is not None else \
            estimator.progress.state_dict()
        epoch, batches = stem_position(stem)
        if self.verbose > 0:
            estimator.log('[Epoch %d] CheckpointHandler: trained total %d batches, saving '
                          'model at %s with prefix: %s', epoch, batches, self.model_dir, stem)
        if improved:
            best_stem = self.model_prefix + '-best'
            if estimator.is_writer:
                self._write(estimator, best_stem, training)
            if self.verbose > 0:
                estimator.log('[Epoch %d] CheckpointHandler: %s improved from %0.5f to %0.5f, '
                              'updating best model at %s with prefix: %s', epoch, name,
                              previous, value, self.model_dir, best_stem)
        elif name is not None and self.verbose > 0:
            estimator.log('[Epoch %d] CheckpointHandler: %s did not improve from %0.5f, '
                          'skipping updating best model', epoch, name, self._monitor.best)

    def _judge_best(self, estimator, point):
        """``(improved, name, value, previous best)``; the best is updated when improved.
        Not at an interrupt checkpoint: its metrics may be half-updated."""
        if self._monitor is None or point is not None:
            return False, None, None, None
        name, value = self._monitor.current(estimator)
        if math.isnan(value):
            warnings.warn(f'CheckpointHandler: skipping the best-checkpoint check because '
                          f'{name} has no value yet; pass one of estimator.train_metrics '
                          'or estimator.val_metrics as monitor', RuntimeWarning)
            return False, None, None, None
        previous = self._monitor.best
        if self._monitor.is_improvement(value):
            self._monitor.best = value
            return True, name, value, previous
        return False, name, value, previous

    def _prune(self):
        if self.max_checkpoints is None:
            return
        while len(self.saved_checkpoints) > self.max_checkpoints:
            stem = self.saved_checkpoints.pop(0)
            self._files.remove(stem)
            self._writable.discard(stem)

    def _save_on_interrupt(self, estimator):
        """At train end after an exception: checkpoint the last completed batch."""
        error = type(estimator.exception).__name__
        point = estimator.resume_point
        if dist.size() > 1 and dist.any_rank(point is None):
            point = None         # some rank cannot describe it: no rank saves
        if point is None:
            estimator.log('CheckpointHandler: training stopped by %s inside a batch\'s '
                          'handlers (or after NumPy\'s/Python\'s random stream moved during the '
                          'first epoch): no consistent state to save (newest checkpoint: %s)',
                          error, self.saved_checkpoints[-1] if self.saved_checkpoints
                          else 'none', level=logging.WARNING)
            return
        progress = point.progress
        if progress['batches'] == 0 or progress == self._newest:
            return
        at_boundary = progress['epoch_batches'] == 0
        epoch = max(progress['epochs_done'] - 1, 0) if at_boundary else progress['epoch']
        stem = '%s-epoch%dbatch%d' % (self.model_prefix, epoch, progress['batches'])
        try:
            self._save_checkpoint(estimator, stem, point)
        except (OSError, FloatingPointError) as err:   # OSError: rank 0's write, after all
            # collectives of the save
            estimator.log('CheckpointHandler: could not save a checkpoint after %s: %s',
                          error, err, level=logging.WARNING)
            return
        where = 'the end of epoch %d' % epoch if at_boundary else \
            'batch %d of epoch %d' % (progress['epoch_batches'], epoch)
        estimator.log('CheckpointHandler: training stopped by %s; saved checkpoint %s (%s); '
                      'run again with resume_from_checkpoint=True to continue', error, stem,
                      where, level=logging.WARNING)

    def state_dict(self):
        return {'best': self._monitor.best} if self._monitor is not None else {}

    def load_state_dict(self, state):
        if self._monitor is not None and 'best' in state:
            self._monitor.best = float(state['best'])

    # ---- finding and reading checkpoints ----------------------------------------------------
    def checkpoints(self):
        """Stems of the epoch/batch checkpoints in ``model_dir``, newest first (valid or not)."""
        return [stem for _, stem in sorted(((self._files.age(s), s)
                                            for s in self._files.stems()), reverse=True)]

    def read(self, stem):
        """``(meta, arrays)`` of checkpoint ``stem`` after checking it is complete and that
        its ``.params``/``.states`` are the files it was written with.

        Raises:
            CheckpointError: naming the file that is missing, truncated or corrupt.
        """
        return self._files.read(stem)

    def _scan(self, estimator):
        """``[(stem, (meta, arrays))]`` of the valid checkpoints, newest first; invalid ones
        are reported (when resuming) and left alone."""
        found = []
        for stem in self._files.stems():
            try:
                loaded = self._files.read(stem)
            except CheckpointError as err:
                found.append((self._files.age(stem), stem, err))
                continue
            found.append((self._files.age(stem, loaded[0]), stem, loaded))
        valid = []
        for _, stem, loaded in sorted(found, key=lambda f: f[:2], reverse=True):
            if isinstance(loaded, CheckpointError):
                if self.resume_from_checkpoint:
                    estimator.log('CheckpointHandler: skipping checkpoint %s: %s', stem,
                                  loaded, level=logging.WARNING)
                continue
            valid.append((stem, loaded))
        return valid

    def resume(self, estimator):
        """Load the newest valid checkpoint into ``estimator`` (parameters, trainer,
        progress, random and loader state, handler states); skipped checkpoints are
        reported by name. Returns the stem loaded, or None when there was none. In a
        distributed run call it on every rank: rank 0 reads and sends to the others."""
        scan = estimator.is_writer or dist.size() == 1
        return self._resume_from(estimator, self._scan(estimator) if scan else [])

    def _resume_from(self, estimator, valid):
        if dist.size() > 1:
            stem = self._load_from_rank0(estimator, valid)
        elif valid:
            stem, (meta, arrays) = valid[0]
            estimator.net.load_parameters(self._files.path(stem, 'params'),
                                          ctx=estimator.context)
            estimator.trainer.load_states(self._files.path(stem, 'states'))
            estimator.load_training_state(meta['training'], arrays)
        else:
            stem = None
        if stem is None:
            estimator.log('CheckpointHandler: no valid checkpoint found in %s, training from '
                          'scratch', self.model_dir)
            return None
        self.resumed_from = stem
        self._newest = estimator.progress.state_dict()
        p = estimator.progress
        if estimator.max_epoch is not None:
            left = '%d epochs' % max(estimator.max_epoch - p.epochs_done, 0)
        else:
            left = '%d batches' % max(estimator.max_batch - p.batches, 0)
        where = 'batch %d of epoch %d' % (p.epoch_batches, p.epoch) if p.mid_epoch \
            else 'the end of epoch %d' % (p.epoch - 1)
        estimator.log('CheckpointHandler: resumed from checkpoint %s (%s, %d batches '
                      'trained), %s left to train', stem, where, p.batches, left)
        return stem

    def _load_from_rank0(self, estimator, valid):
        """Rank 0's newest valid checkpoint, loaded on every rank (collective): rank 0
        reads the files and broadcasts parameters, trainer states and training state."""
        package = None
        if estimator.is_writer and valid:
            stem, (meta, arrays) = valid[0]
            package = {'stem': stem, 'training': meta['training'], 'arrays': arrays,
                       'params': load_npz(self._files.path(stem, 'params'), 'parameter')}
        package = dist.broadcast_object(package, root=0)
        if package is None:
            return None
        estimator.net.load_parameters(package['params'], ctx=estimator.context)
        if estimator.is_writer:
            estimator.trainer.load_states(self._files.path(package['stem'], 'states'))
        estimator.trainer.broadcast_states(root=0)
        estimator.load_training_state(package['training'], package['arrays'])
        return package['stem']


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
