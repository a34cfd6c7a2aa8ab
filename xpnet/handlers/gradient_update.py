"""GradientUpdateHandler: apply the optimizer step at batch end, optionally accumulating the
gradients of several batches and clipping their global norm first."""
import numbers

import numpy as np

from .._events import BatchEnd, EpochEnd, TrainBegin, batch_size_of
from ..backend import to_device, to_host
from ._filters import EventFilter, period_filter

__all__ = ['GradientUpdateHandler']


class GradientUpdateHandler(TrainBegin, BatchEnd, EpochEnd):
    """Updates the weights at batch end: ``trainer.step(batch_size)``, where the batch size
    is the number of per-sample losses of the batch (over all devices).

    With ``accumulate=k`` the gradients of k batches are summed and one update is applied
    with their total sample count, so k batches of b samples give the numbers of one batch
    of k·b samples (to float32 rounding: the sums are taken in another order). The running
    sum lives in the handler (your ``grad_req`` stays as it is; parameters with
    ``grad_req='add'`` are refused, they would be counted twice) and goes into checkpoints,
    so a run resumed in the middle of a window continues exactly. Windows restart at each
    epoch: the last batches of an epoch that do not fill a window are applied at its end.

    With ``clip_global_norm=c`` the gradient is rescaled, after it is summed over devices
    (and processes) and before the update, so that the 2-norm over all parameters of the
    batch-mean gradient (the summed gradient divided by the sample count, what the
    optimizer applies) is at most c: PyTorch's ``clip_grad_norm_`` after
    ``loss.mean().backward()``. It reads nothing back from the device.

    Args:
        priority: runs first (-2000), so the other handlers see the updated weights.
        accumulate: batches per update (1: every batch).
        clip_global_norm: the largest global norm of the mean gradient, or None.

    Example::

        est.fit(train, epochs=10, event_handlers=[
            GradientUpdateHandler(accumulate=4, clip_global_norm=1.0)])
    """

    def __init__(self, priority=-2000, accumulate=1, clip_global_norm=None):
        if isinstance(accumulate, bool) or not isinstance(accumulate, numbers.Integral) or \
                accumulate < 1:
            raise ValueError('GradientUpdateHandler: accumulate must be a positive integer, '
                             f'got {accumulate!r}')
        if clip_global_norm is not None and (isinstance(clip_global_norm, bool) or
                                             not isinstance(clip_global_norm, numbers.Real) or
                                             not clip_global_norm > 0):
            raise ValueError('GradientUpdateHandler: clip_global_norm must be a positive '
                             f'number or None, got {clip_global_norm!r}')
        self.priority = priority
        self.accumulate = int(accumulate)
        self.clip_global_norm = None if clip_global_norm is None else float(clip_global_norm)
        # epoch_end only applies a window the epoch left unfinished
        self.event_filters = {'epoch_end': period_filter('epoch_end', None)
                              if self.accumulate == 1 else
                              EventFilter('epoch_end', event_filter=self._has_pending)}
        self._reset()

    def _reset(self):
        self.pending_batches = 0      # batches summed since the last update
        self.pending_samples = 0
        self._sums = None             # {parameter name: [sum on each device]}
        self._host_sums = None        # sums loaded from a checkpoint, not on the devices yet

    def _has_pending(self, estimator, count):
        return self.pending_batches > 0

    # ---- events ---------------------------------------------------------------------------
    def train_begin(self, estimator, *args, **kwargs):
        self._reset()
        if self.accumulate > 1:
            added = [k for k, p in estimator.net.collect_params().items() if p.grad_req == 'add']
            if added:
                raise ValueError(
                    f'GradientUpdateHandler(accumulate={self.accumulate}) sums gradients '
                    f"itself, but parameters {added[:5]} have grad_req='add' and would be "
                    "summed twice; set their grad_req to 'write'")

    def batch_end(self, estimator, *args, **kwargs):
        samples = batch_size_of(kwargs['loss'])
        if self.accumulate == 1:
            self._update(estimator, samples)
            return
        self._add_gradients(estimator)
        self.pending_batches += 1
        self.pending_samples += samples
        if self.pending_batches == self.accumulate:
            self._apply_window(estimator)

    def epoch_end(self, estimator, *args, **kwargs):
        self._apply_window(estimator)

    # ---- the update -----------------------------------------------------------------------
    def _params(self, estimator):
        return [(k, p) for k, p in estimator.net.collect_params().items()
                if p.grad_req != 'null' and _initialized(p)]

    def _restore_sums(self, estimator):
        host, self._host_sums = self._host_sums, None
        self._sums = {}
        for name, p in self._params(estimator):
            if name in host:
                self._sums[name] = [to_device(np.asarray(h), d.context, dtype=d.dtype, copy=True)
                                    for h, d in zip(host[name], p.list_data())]

    def _add_gradients(self, estimator):
        if self._host_sums is not None:
            self._restore_sums(estimator)
        first = self._sums is None
        if first:
            self._sums = {}
        for name, p in self._params(estimator):
            grads = p.list_grad()
            if first or name not in self._sums:
                self._sums[name] = [_copy(g) for g in grads]
                continue
            for s, g in zip(self._sums[name], grads):
                with g.context.use():
                    g.xp.add(s, g.data, out=s)

    def _apply_window(self, estimator):
        if self._host_sums is not None:
            self._restore_sums(estimator)
        # the summed gradient replaces what the last backward wrote, then one update
        for name, p in self._params(estimator):
            sums = self._sums.get(name) if self._sums else None
            if sums is None:
                continue
            for s, d in zip(sums, p.list_data()):
                with d.context.use():
                    d.grad.data[...] = s
                # a fresh gradient for the trainer's stale-gradient check, also when the
                # window was restored from a checkpoint and no backward ran since
                d._fresh_grad = True
        # a distributed trainer may have started reducing the last batch's gradients
        # during its backward pass (the Trainer keeps its reducer privately)
        reducer = getattr(estimator.trainer, '_dist', None)
        if reducer is not None:
            reducer.gradients_changed()
        samples = self.pending_samples
        self._reset()
        self._update(estimator, samples)

    def _update(self, estimator, samples):
        trainer = estimator.trainer
        if self.clip_global_norm is None:
            trainer.step(samples)
            return
        from .. import distributed as dist
        from ..utils import clip_global_norm
        trainer.allreduce_grads()
        # the summed gradient is over every rank's samples: the mean divides by all of them
        total = samples if dist.size() == 1 else \
            float(dist.allreduce(np.array([samples], np.float64))[0])
        params = self._params(estimator)
        if params:
            # after allreduce_grads every device holds the same total: clip each device's
            # copy alike (the same numbers give the same norm, with no read-back)
            for replica in zip(*(p.list_grad() for _, p in params)):
                clip_global_norm(list(replica), self.clip_global_norm * total,
                                 check_isfinite=False)
        trainer.update(samples)

    # ---- checkpoints ----------------------------------------------------------------------
    def state_dict(self):
        state = {'pending_batches': self.pending_batches, 'pending_samples': self.pending_samples}
        if self.pending_batches and self._sums:
            state['sums'] = {k: [np.array(to_host(s)) for s in v]
                             for k, v in self._sums.items()}
        return state

    def load_state_dict(self, state):
        self._reset()
        self.pending_batches = int(state.get('pending_batches', 0))
        self.pending_samples = int(state.get('pending_samples', 0))
        if self.pending_batches and state.get('sums'):
            self._host_sums = state['sums']     # moved to the devices at the next batch


def _copy(g):
    with g.context.use():
        return g.data.copy()


def _initialized(p):
    try:
        p.list_data()
    except RuntimeError:
        return False
    return True
