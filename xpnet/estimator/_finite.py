"""The Estimator's guard against a non-finite training loss.

On the CPU, under MPI, or with an optimizer that has no multi-tensor kernel, the loss is
checked on the host after every batch (a read-back on a device; under MPI all ranks agree
on it) and ``FloatingPointError`` stops training before that batch's update.

On a device (one process, an optimizer with a multi-tensor kernel: SGD, NAG, Adam, AdamW)
the decision stays on the device, so a training step reads nothing back:

- one kernel per batch marks an int32 flag with the run's batch number if the loss holds
  NaN or inf (the first such batch stays);
- the optimizer's update kernels skip while the flag is set
  (:meth:`~xpnet.optimizer.Optimizer.set_skip_flag`), so from that batch on the weights
  and optimizer states keep the values they had after the last finite batch;
- the flag is a pending device check (:mod:`xpnet.backend.checks`): the next read-back
  (a metric value at a log point, a checkpoint, ``asnumpy``), and at the latest the end
  of the epoch, raises :class:`NonFiniteLossError` (a ``FloatingPointError``) naming the
  batch;
- training then ends as before: the resume point and the optimizer's update counts are
  those after the last finite batch, so a checkpoint written at ``train_end`` resumes
  exactly there, and no checkpoint ever holds non-finite parameters.
"""
import numpy as np

from ..backend.checks import device_assert, flush_device_checks
from ..ndarray import NDArray

__all__ = ['NonFiniteLossError', 'FiniteGuard']


class NonFiniteLossError(FloatingPointError):
    """A training loss held NaN or inf (raised at the read-back after it on a device)."""


class FiniteGuard:
    """Checks one ``fit``'s training losses (see the module docstring)."""

    def __init__(self, estimator):
        self.on_device = _device_guard_applies(estimator)
        self.flag = None
        self.where = {}          # run batch number -> (epoch, batch in the epoch)
        self.points = {}         # batches done -> (resume point, optimizer counts)
        self.failed = None
        if self.on_device:
            ctx = estimator.trainer._contexts[0]
            with ctx.use():
                self.flag = ctx.xp.zeros((), dtype=np.int32)
            self.ctx = ctx
            estimator.trainer.optimizer.set_skip_flag(self.flag)

    def close(self, estimator):
        """Stop skipping updates (the fit is over)."""
        if self.on_device:
            estimator.trainer.optimizer.set_skip_flag(None)

    def check(self, estimator, loss, check_now):
        """After a batch's forward and backward: ``check_now(loss)`` on the host, or mark
        the device flag (no synchronisation)."""
        if not self.on_device:
            check_now(loss)
            return
        from ..backend.kernels.checks import mark_nonfinite
        p = estimator.progress
        number = p.batches + 1
        self.where[number] = (p.epoch, p.epoch_batches)
        for l in loss:
            if not isinstance(l, NDArray):
                continue
            xp = l.xp
            with l.context.use():
                if l.context == self.ctx:
                    mark_nonfinite(xp, l._data, self.flag, number)
                else:                            # mark on its device, then a peer copy
                    local = xp.zeros((), dtype=np.int32)
                    mark_nonfinite(xp, l._data, local, number)
            if l.context != self.ctx:
                with self.ctx.use():
                    other = self.ctx.xp.asarray(local)
                    self.flag[...] = self.ctx.xp.where(self.flag == 0, other, self.flag)
        device_assert(self.flag, self._message, NonFiniteLossError)

    def remember(self, estimator):
        """After a batch (or an epoch boundary): the resume point and the optimizer's
        update counts, to go back to if a later batch turns out non-finite."""
        if not self.on_device:
            return
        opt = estimator.trainer.optimizer
        self.points[estimator.progress.batches] = (
            estimator._resume_point, dict(opt._index_update_count), opt.num_update)

    def flush(self):
        """Raise now if a loss was non-finite (one read-back, at the end of an epoch)."""
        if self.on_device:
            flush_device_checks()
            self._forget_before(max(self.points, default=0))

    def rewind(self, estimator, error):
        """On a :class:`NonFiniteLossError`: the resume point and update counts of the
        last finite batch."""
        if not (self.on_device and isinstance(error, NonFiniteLossError) and self.failed):
            return
        saved = self.points.get(self.failed - 1)
        if saved is None:
            estimator._resume_point = None
            return
        point, counts, num_update = saved
        opt = estimator.trainer.optimizer
        opt._index_update_count, opt.num_update = dict(counts), num_update
        if point is not None:
            point.valid = True       # the later batches changed nothing it describes
        estimator._resume_point = point

    def _forget_before(self, batches):
        for k in [k for k in self.points if k < batches]:
            del self.points[k]
        for k in [k for k in self.where if k <= batches]:
            del self.where[k]

    def _message(self, number):
        self.failed = number
        epoch, batch = self.where.get(number, ('?', '?'))
        return (f'non-finite training loss in epoch {epoch}, batch {batch} (batch {number} '
                'of the run), found at the next read-back: this batch\'s update and every '
                'later one were skipped on the device, so the weights and every checkpoint '
                'stay those of the batch before it. Lower the learning rate, clip '
                'gradients or check the data for NaN/inf.')


def _device_guard_applies(estimator):
    """Whether the guard decides on the device: one process, device contexts only, and an
    optimizer whose updates can skip on the device."""
    from ..backend.kernels import fused
    contexts = list(getattr(estimator.trainer, '_contexts', None) or [])
    if estimator._ranks > 1 or not contexts:
        return False
    if any(c.device_type == 'cpu' for c in contexts):
        return False
    opt = estimator.trainer.optimizer
    return opt._fusable() and all(fused(c.xp) for c in contexts)
