"""The Estimator's checkpointable state besides parameters and trainer: progress, random
streams, loader position, metric, history and handler states (a mixin of the Estimator)."""
import logging

from .._events import is_stateful
from ._distributed import gather_rank_states, select_rank_state
from ._state import (capture_random_state, join_arrays, load_metric_state, metric_state,
                     restore_random_state, rewind_loader_state, split_arrays)

__all__ = ['TrainingStateMixin']


class TrainingStateMixin:
    """``training_state`` / ``load_training_state`` for :class:`Estimator`."""

    def _stateful_handlers(self):
        """``(key, handler)`` for each handler with state; keys are class names, numbered
        from the second handler of a class on (``EarlyStoppingHandler#1``)."""
        seen = {}
        for h in self.event_handlers:
            if is_stateful(h):
                kind = type(h).__name__
                i = seen.get(kind, 0)
                seen[kind] = i + 1
                yield (kind if i == 0 else f'{kind}#{i}'), h

    def _loader_state(self, point):
        """``(state, finished)``: the loader's state now, or at ``point`` (rewound to its
        batch; ``finished`` when the loader had yielded the whole epoch already); None if
        the loader has none (or, at a point, cannot be rewound)."""
        if not callable(getattr(self.train_data, 'state_dict', None)):
            return None, False
        if point is None:
            state = self.train_data.state_dict()
            done = self.progress.epoch_batches
            if self.progress.mid_epoch:     # the device prefetcher may have read ahead
                rewound, finished = rewind_loader_state(state, done)
                if rewound is not None:
                    return rewound, finished
            return state, False
        if point.loader is not None:
            return point.loader, point.loader_finished
        state, finished = rewind_loader_state(self.train_data.state_dict(),
                                              point.progress['epoch_batches'])
        return state, finished and point.progress['epoch_batches'] > 0

    def _metric_states(self, metrics, pending=None):
        if pending is not None:      # restored from a checkpoint but not applied yet
            return join_arrays(*pending)
        def warn(msg):
            self.log(msg, level=logging.WARNING)
        return [metric_state(m, warn) for m in metrics]

    def training_state(self, point=None):
        """Everything besides parameters and trainer needed to continue this run exactly.

        Args:
            point: a :class:`ResumePoint` (``estimator.resume_point``) to describe instead
                of now: its counters, random streams and loader position are used.

        Under MPI this is a collective (call it on every rank at the same point): rank
        0's result also holds the other ranks' own parts (random streams, loader
        position, metric and handler states where they differ from rank 0's), so a
        checkpoint rank 0 writes resumes every rank.

        Returns:
            ``(meta, arrays)``: a JSON-able dict (progress, random states, the loader's
            position within an unfinished epoch, metric states, history, the state of every
            handler with ``state_dict()``) and the host arrays it refers to.
        """
        arrays = {}
        loader_state, loader_finished = self._loader_state(point)
        if loader_state is not None:
            loader_state = split_arrays(loader_state, 'loader', arrays)
        progress = self.progress.state_dict() if point is None else dict(point.progress)
        random = capture_random_state() if point is None else point.random
        meta = {
            'progress': progress,
            'random': split_arrays(random, 'random', arrays),
            'loader': loader_state,
            'loader_finished': bool(loader_finished),
            'train_metrics': split_arrays(
                self._metric_states(self.train_metrics, self._pending_metric_states),
                'train_metrics', arrays),
            'val_metrics': split_arrays(self._metric_states(self.val_metrics),
                                        'val_metrics', arrays),
            'history': self.history.state_dict(),
            'handlers': {key: split_arrays(h.state_dict(), f'handlers/{key}', arrays)
                         for key, h in self._stateful_handlers()},
        }
        if self._ranks > 1:
            return gather_rank_states(meta, arrays)
        return meta, arrays

    def load_training_state(self, meta, arrays):
        """Continue the run saved by :meth:`training_state` (call it from ``train_begin``).

        Progress, random states, history and the loader position apply at once; handler
        states apply once every ``train_begin`` handler has run (so their fresh-run setup
        does not wipe them), and training metric states after the first ``epoch_begin``.
        Each rank of a distributed run takes its own parts of the state; a checkpoint of a
        job with another number of ranks raises ``ValueError``.
        """
        if self._ranks > 1 or 'world_size' in meta:
            meta = select_rank_state(meta, self._rank, self._ranks)
        self.progress.load_state_dict(meta['progress'])
        restore_random_state(join_arrays(meta['random'], arrays))
        self.history.load_state_dict(meta['history'])
        loader_state = meta.get('loader')
        can_load = callable(getattr(self.train_data, 'load_state_dict', None))
        if loader_state is not None and can_load:
            self.train_data.load_state_dict(join_arrays(loader_state, arrays))
        if self.progress.mid_epoch:
            if meta.get('loader_finished') and loader_state is not None and can_load:
                # every batch of the epoch was trained: only its end is left to run
                self._epoch_batches_done = True
                self._pending_metric_states = (meta.get('train_metrics'), arrays)
            elif loader_state is None or not can_load:
                p = self.progress
                self.log(
                    'the checkpoint was taken after batch %d of epoch %d but train_data '
                    '(%s) cannot restore its position (no state_dict/load_state_dict): '
                    'epoch %d restarts from its first batch', p.epoch_batches, p.epoch,
                    type(self.train_data).__name__, p.epoch, level=logging.WARNING)
                p.epoch_batches = p.epoch_samples = 0
            else:
                self._pending_metric_states = (meta.get('train_metrics'), arrays)
        self._load_metric_states(self.val_metrics, meta.get('val_metrics'), arrays)
        states = (meta.get('handlers', {}), arrays)
        if self._in_train_begin:
            self._pending_handler_states = states
        else:
            self._load_handler_states(*states)

    @staticmethod
    def _load_metric_states(metrics, states, arrays):
        if not states:
            return
        for m, s in zip(metrics, join_arrays(states, arrays)):
            load_metric_state(m, s)

    def _load_handler_states(self, states, arrays):
        for key, h in self._stateful_handlers():
            if key in states:
                h.load_state_dict(join_arrays(states[key], arrays))
                # e.g. an EarlyStoppingHandler that had already stopped the saved run
                if getattr(h, 'stop_training', False) is True:
                    self.stop_training = True
