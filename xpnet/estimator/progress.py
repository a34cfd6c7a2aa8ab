"""Training progress: the one place that counts epochs, batches and samples.

Handlers never keep their own counters; they read ``estimator.progress``. The convention:

* ``epoch`` is the index (from 0) of the current epoch: the one running, or, inside
  ``epoch_end``, the one that just ended. It is the number shown in ``[Epoch k]`` logs and
  in checkpoint names.
* every other counter counts **completed** work and is updated *before* the handlers of the
  event that completes it run: inside ``batch_end``, ``batches`` / ``epoch_batches`` /
  ``samples`` already include the batch just trained; inside ``epoch_end``,
  ``epochs_done`` already includes the epoch just ended (``epochs_done == epoch + 1``).
  So "every N batches" is ``batches % N == 0`` and "every N epochs" is
  ``epochs_done % N == 0`` (see :func:`xpnet.handlers.every`).

Example::

    class Report(BatchEnd):
        def batch_end(self, estimator, *args, **kwargs):
            p = estimator.progress
            print(f'epoch {p.epoch}: {p.epoch_batches} batches this epoch, {p.batches} in all')
"""

__all__ = ['Progress']

_FIELDS = ('epoch', 'epochs_done', 'batches', 'epoch_batches', 'samples', 'epoch_samples')


class Progress:
    """Counters of one ``fit`` run (see the module docstring for the convention).

    Attributes:
        epoch: index of the current epoch, from 0.
        epochs_done: epochs completed.
        batches: batches completed since training began (the global step).
        epoch_batches: batches completed in the current epoch.
        samples: samples trained since training began.
        epoch_samples: samples trained in the current epoch.
        max_epoch, max_batch: the limits ``fit`` was given (one of them is None).
    """

    def __init__(self, max_epoch=None, max_batch=None):
        self.max_epoch = max_epoch
        self.max_batch = max_batch
        self.epoch = 0
        self.epochs_done = 0
        self.batches = 0
        self.epoch_batches = 0
        self.samples = 0
        self.epoch_samples = 0

    # ---- updates (called by the Estimator only) -------------------------------------------
    def complete_batch(self, num_samples):
        self.batches += 1
        self.epoch_batches += 1
        self.samples += num_samples
        self.epoch_samples += num_samples

    def complete_epoch(self):
        self.epochs_done = self.epoch + 1

    def start_next_epoch(self):
        self.epoch = self.epochs_done
        self.epoch_batches = 0
        self.epoch_samples = 0

    # ---- queries ------------------------------------------------------------------------
    def limit_reached(self):
        """True once ``max_epoch`` epochs or ``max_batch`` batches are completed."""
        return bool((self.max_epoch is not None and self.epochs_done >= self.max_epoch) or
                    (self.max_batch is not None and self.batches >= self.max_batch))

    @property
    def mid_epoch(self):
        """True when some, but not all, batches of the current epoch are done."""
        return self.epoch_batches > 0 and self.epochs_done == self.epoch

    def state_dict(self):
        """The counters as a JSON-able dict (for checkpoints)."""
        return {k: getattr(self, k) for k in _FIELDS}

    def load_state_dict(self, state):
        for k in _FIELDS:
            setattr(self, k, int(state[k]))

    def __repr__(self):
        body = ', '.join(f'{k}={getattr(self, k)}' for k in _FIELDS)
        return f'Progress({body})'
