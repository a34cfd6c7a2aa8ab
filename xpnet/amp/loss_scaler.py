"""Dynamic loss scaling whose decisions stay on the device.

:class:`LossScaler` keeps MXNet 1.9's rule (``contrib/amp/loss_scaler.py``): the loss is
multiplied by the scale (initially 2**16) before the backward pass; an update whose
gradients hold an inf or NaN is skipped and the scale halved; after 2000 clean updates in a
row the scale doubles (at most 2**24). MXNet reads the overflow flag back to the host at
every step to decide whether to skip; here the scale, the count of clean updates and the
overflow flag are device scalars, and a skipped update is undone on the device:

- ``unscale``: every gradient is multiplied by ``1/scale`` in place; then each is summed
  (a non-finite gradient gives a non-finite sum) and the overflow flag is
  ``not isfinite(total)``.
- ``masked_update``: the weight and optimizer-state arrays a parameter's update writes are
  copied first and copied back where the flag is set (``copyto(..., where=overflow)``).
- ``finish_update``: the new scale and count, one fused kernel on a GPU.

No value is read back per step; :attr:`loss_scale` and :meth:`state_dict` read the scale
(for logs and checkpoints). The optimizer's host bookkeeping (update counts, hence a
learning-rate schedule and Adam's bias correction) counts a skipped update as done, where
MXNet, deciding on the host, does not: the weights and optimizer states are exactly those
of a skipped step.

Example::

    scaler = LossScaler()
    # the Trainer drives it once ``amp.init_trainer(trainer)`` attached it
"""
import numpy as np

from .. import autograd
from ..backend import to_device
from ..ndarray import NDArray, _wrap

__all__ = ['LossScaler']

_F32 = np.dtype(np.float32)
# NumPy's warnings about overflowed gradients are noise: detecting them is the point (a
# GPU warns about nothing; the state is thread-local, so nothing of the user's changes)


def _quiet():
    return np.errstate(over='ignore', invalid='ignore', divide='ignore')


class LossScaler:
    """Dynamic loss scaler with device-side state (see the module docstring).

    Args:
        init_scale: the first loss scale (MXNet: 2**16).
        scale_factor: the scale is divided by it after an overflow and multiplied by it
            after ``scale_window`` clean updates.
        scale_window: clean updates in a row before the scale grows (MXNet: 2000).
        max_scale: the scale never grows past it (MXNet: 2**24).
    """

    def __init__(self, init_scale=2.**16, scale_factor=2., scale_window=2000,
                 max_scale=2.**24):
        if not (init_scale > 0 and scale_factor > 1 and max_scale >= init_scale):
            raise ValueError(f'LossScaler: need init_scale > 0, scale_factor > 1 and '
                             f'max_scale >= init_scale, got {init_scale}, {scale_factor}, '
                             f'{max_scale}')
        if isinstance(scale_window, bool) or not isinstance(scale_window, int) or \
                scale_window < 1:
            raise ValueError(f'LossScaler: scale_window must be a positive int, got '
                             f'{scale_window!r}')
        self.scale_factor = float(scale_factor)
        self.scale_window = scale_window
        self.max_scale = float(max_scale)
        self._host = (float(init_scale), 0)   # the state until it moves to a device
        self._ctx = None          # the device of the state (the trainer's first context)
        self._scale = self._unskipped = None
        self._copies = {}         # other context -> (version, the scale there)
        self._version = 0
        self._overflow = None     # this update's flag (a device bool), set by begin_update
        self.armed = False        # the gradients were computed from a scaled loss
        self._unscaled = False    # ... and have been divided by the scale already
        self._next = None         # the fused update of the state, per array module

    # ---- placement ------------------------------------------------------------------------
    def _bind(self, ctx):
        """Keep the state on ``ctx`` (called by ``amp.init_trainer`` with the trainer's
        first context, where the updates run)."""
        if self._ctx is not None and ctx != self._ctx:
            scale, unskipped = self._read()
            self._host, self._scale = (scale, unskipped), None
        self._ctx = ctx

    def _state(self):
        if self._scale is None:
            if self._ctx is None:
                raise RuntimeError('LossScaler: not attached to a trainer; call '
                                   'amp.init_trainer(trainer)')
            scale, unskipped = self._host
            self._scale = to_device(np.array(scale, _F32), self._ctx)
            self._unskipped = to_device(np.array(unskipped, _F32), self._ctx)
            self._version += 1
        return self._scale, self._unskipped

    def scale_on(self, ctx):
        """The loss scale as a 0-d device array on ``ctx`` (a peer copy, refreshed once per
        update, for devices other than the state's)."""
        scale = self._state()[0]
        if ctx == self._ctx:
            return scale
        version, copy = self._copies.get(ctx, (None, None))
        if version != self._version:
            copy = to_device(scale, ctx)
            self._copies[ctx] = (self._version, copy)
        return copy

    # ---- the step ---------------------------------------------------------------------------
    def scale(self, loss):
        """``loss * scale`` in float32, recorded (inside ``autograd.record()`` or not) so
        that ``backward`` reaches the loss's graph; marks the coming gradients as scaled."""
        if not isinstance(loss, NDArray):
            raise TypeError(f'amp.scale_loss: expected an NDArray loss (or a list of them), '
                            f'got {type(loss).__name__}')
        self.armed = True
        self._unscaled = False
        # recorded even outside autograd.record(): backward() follows the loss's graph
        with autograd.record(train_mode=autograd.is_training()):
            if loss.dtype != _F32:
                loss = loss.astype(_F32)
            return loss * _wrap(self.scale_on(loss.context), loss.context)

    def unscale(self, params):
        """Divide the gradients of ``params`` (every replica) by the scale, in place. No-op
        unless they come from a scaled loss and were not unscaled yet."""
        if not self.armed or self._unscaled:
            return
        inverses = {}
        for g, ctx, _ in _gradients(params):
            with ctx.use(), _quiet():
                inv = inverses.get(ctx)
                if inv is None:
                    inv = inverses[ctx] = (1 / self.scale_on(ctx)).astype(g.dtype)
                g *= inv if inv.dtype == g.dtype else inv.astype(g.dtype)
        self._unscaled = True

    def _check_overflow(self, params):
        """The overflow flag: ``not isfinite(sum of every gradient)`` over the first
        replicas (identical to the others once reduced)."""
        grads = [g for g, _, k in _gradients(params) if k == 0]
        xp = self._ctx.xp
        with self._ctx.use(), _quiet():
            partials = xp.zeros(len(grads), dtype=_F32)
            for i, g in enumerate(grads):      # one reduction each, straight into its slot
                xp.sum(g, dtype=_F32, out=partials[i:i + 1].reshape(()))
            return xp.logical_not(xp.isfinite(partials.sum()))

    def masked_update(self, update, index, weight, grad, state):
        """``update(index, weight, grad, state)`` undone on the device where this step's
        gradients overflowed."""
        arrays = [weight] + _state_arrays(state)
        with weight.context.use(), _quiet():       # an overflowed update computes infs/NaNs
            saved = [a._data.copy() for a in arrays]
            update(index, weight, grad, state)
            flag = self._overflow if weight.context == self._ctx else \
                to_device(self._overflow, weight.context)
            for a, s in zip(arrays, saved):
                a.xp.copyto(a._data, s, where=flag)

    def begin_update(self, params):
        """The overflow flag (a device bool) for the update about to run, after unscaling
        if needed; None when the gradients were not scaled (a plain update)."""
        if not self.armed:
            return None
        self.unscale(params)
        self._overflow = self._check_overflow(params)
        return self._overflow

    def finish_update(self):
        """After the update: the next scale and clean-update count, on the device."""
        scale, unskipped = self._state()
        xp = self._ctx.xp
        with self._ctx.use():
            new_scale, new_unskipped = self._next_state(xp)(self._overflow, scale, unskipped)
            # float32 whatever type a fused kernel gives its Python-float constants
            self._scale = new_scale.astype(_F32, copy=False)
            self._unskipped = new_unskipped.astype(_F32, copy=False)
        self._version += 1
        self._overflow = None
        self.armed = self._unscaled = False

    def _next_state(self, xp):
        if self._next is None or self._next[0] is not xp:
            self._next = (xp, _state_update(xp, self.scale_factor, float(self.scale_window),
                                            self.max_scale))
        return self._next[1]

    # ---- reading and checkpoints -----------------------------------------------------------
    def _read(self):
        if self._scale is None:
            return self._host
        return float(self._scale.item()), int(self._unskipped.item())

    @property
    def loss_scale(self):
        """The current loss scale (reads it from the device)."""
        return self._read()[0]

    def state_dict(self):
        """``{'loss_scale', 'unskipped', 'armed'}`` (reads the device state)."""
        scale, unskipped = self._read()
        return {'loss_scale': scale, 'unskipped': unskipped, 'armed': bool(self.armed)}

    def load_state_dict(self, state):
        """Restore :meth:`state_dict`'s output."""
        self._host = (float(state['loss_scale']), int(state['unskipped']))
        self._scale = self._unskipped = None
        self._copies = {}
        self.armed = bool(state.get('armed', False))
        self._unscaled = False
        self._overflow = None

    def __repr__(self):
        where = 'host' if self._scale is None else self._ctx
        return f'LossScaler(window={self.scale_window}, factor={self.scale_factor}, on {where})'


def _gradients(params):
    """``(gradient array, context, replica index)`` of each replica of ``params`` whose
    gradient was written since the last update (the values of a row-sparse one); a stale
    buffer holds an unscaled gradient already."""
    for p in params:
        if p.grad_req == 'null':
            continue
        for k, d in enumerate(p._data or ()):
            buf = d._grad
            if buf is None or not d._fresh_grad:
                continue
            sparse = getattr(buf, '_sparse', None)
            yield (sparse.values if sparse is not None else buf._data), d.context, k


def _state_arrays(state):
    """The NDArrays of an optimizer state (None, an NDArray or nested tuples/lists)."""
    if isinstance(state, NDArray):
        return [state]
    if isinstance(state, (tuple, list)):
        return [a for s in state for a in _state_arrays(s)]
    return []


def _state_update(xp, factor, window, max_scale):
    """``(overflow, scale, unskipped) -> (scale, unskipped)``: MXNet's rule, as one fused
    kernel where the array module fuses (CuPy, the simulated device)."""
    def next_state(overflow, scale, unskipped):
        grown = unskipped + 1.0
        grow = xp.logical_and(xp.logical_not(overflow), grown >= window)
        new_scale = xp.where(overflow, scale / factor,
                             xp.where(grow, xp.minimum(scale * factor, max_scale), scale))
        new_unskipped = xp.where(xp.logical_or(overflow, grow), 0.0, grown)
        return new_scale, new_unskipped
    fuse = getattr(xp, 'fuse', None)
    if fuse is not None:
        return fuse(next_state)

    def host_next_state(overflow, scale, unskipped):
        new_scale, new_unskipped = next_state(overflow, scale, unskipped)
        return np.asarray(new_scale, _F32), np.asarray(new_unskipped, _F32)
    return host_next_state
