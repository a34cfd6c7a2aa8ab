"""The Optimizer base class: learning rate, weight decay, multipliers and update counting.

The bookkeeping follows MXNet 1.9's ``mxnet.optimizer.Optimizer`` exactly (so schedules,
Adam's bias correction and per-parameter multipliers give the same numbers): every
``update(index, ...)`` first counts the update of ``index``, ``num_update`` is the largest
count of any index, the learning rate is ``lr_scheduler(num_update)`` (or ``lr``) times the
parameter's ``lr_mult``, and the weight decay is ``wd`` times its ``wd_mult``.

Subclasses implement ``create_state(index, weight)`` and ``_step(index, weight, grad, state,
lr, wd)``; the arithmetic runs in place on the weight's device through its array module.
On a device (CuPy or the simulated one), SGD, NAG, Adam and AdamW also implement
``_fused_update``: :meth:`Optimizer.update_many` (what the Trainer calls) then updates all
the parameters of one device and dtype with one multi-tensor kernel
(:mod:`xpnet.backend.kernels.optim`), with the same arithmetic, and can skip the step on
the device (:meth:`Optimizer.set_skip_flag`).
A gradient may be an :class:`~xpnet.ndarray.RowSparseGrad` (``Embedding(sparse_grad=True)``):
optimizers with ``lazy_update`` then touch only its rows, the others use it densified.

Example::

    opt = xpnet.optimizer.create('sgd', learning_rate=0.1, momentum=0.9, wd=1e-4)
    state = opt.create_state(0, weight)
    opt.update(0, weight, grad, state)        # weight changes in place
"""
import warnings

import numpy as np

from ..backend import context_of, run_on
from ..backend.kernels import fused as _use_fused
from ..ndarray import NDArray, _wrap

__all__ = ['Optimizer', 'register', 'create']


def _is_sparse(grad):
    return getattr(grad, 'is_row_sparse', False)


def _data(arr):
    """The xp array behind an NDArray (or the array itself)."""
    return arr._data if isinstance(arr, NDArray) else arr


def _zeros_like(weight, dtype=None):
    with weight.context.use():
        return _wrap(weight.xp.zeros(weight.shape, dtype=dtype or weight.dtype),
                     weight.context)


def _dense_grad(grad):
    """The gradient as an xp array (a row-sparse one densified)."""
    return grad.todense() if _is_sparse(grad) else _data(grad)


def _sparse_rows(grad):
    """(unique row indices, summed row gradients) of a row-sparse gradient."""
    g = grad.coalesce()
    return g.indices, g.values


def _scaled_grad(xp, g, rescale, clip, wd=0.0, w=None):
    """A fresh array ``clip(rescale * g + wd * w)`` (the caller may overwrite it)."""
    t = g * rescale
    if wd:
        tmp = w * wd
        t += tmp
        del tmp
    if clip is not None:
        xp.clip(t, -clip, clip, out=t)
    return t


class Optimizer:
    """Base class of the optimizers.

    Args:
        rescale_grad: gradients are multiplied by this first (the Trainer sets
            ``1/batch_size``).
        param_idx2name: dict index -> parameter name, used to look up ``lr_mult`` /
            ``wd_mult`` given by name; with it, parameters whose name does not end in
            ``weight`` or ``gamma`` get no weight decay (MXNet's rule).
        wd: weight decay (L2) coefficient.
        clip_gradient: clip the (rescaled) gradient to ``[-clip_gradient, clip_gradient]``;
            None or a value <= 0 disables clipping.
        learning_rate: the learning rate; None means the scheduler's, or 0.01 without one.
            Given together with ``lr_scheduler`` it overwrites the scheduler's ``base_lr``
            (MXNet's rule; note that MXNet's Poly/Cosine schedulers keep decaying from their
            own original ``base_lr``).
        lr_scheduler: an :class:`~xpnet.lr_scheduler.LRScheduler`.
        sym: accepted for MXNet compatibility (must be None: xpnet has no symbols).
        begin_num_update: the update count to start from.
        multi_precision: keep a float32 master copy of float16 weights and update that.
        param_dict: dict index -> Parameter whose ``lr_mult`` / ``wd_mult`` are read at every
            update (the Trainer passes its parameters here).
    """
    opt_registry = {}
    _supports_lazy = False

    def __init__(self, rescale_grad=1., param_idx2name=None, wd=0., clip_gradient=None,
                 learning_rate=None, lr_scheduler=None, sym=None, begin_num_update=0,
                 multi_precision=False, param_dict=None):
        if sym is not None:
            raise ValueError('Optimizer: sym is not supported (xpnet has no symbolic graphs); '
                             'set lr_mult/wd_mult on the Parameters instead')
        self.rescale_grad = rescale_grad
        self.lr_scheduler = lr_scheduler
        if lr_scheduler is None and learning_rate is None:
            learning_rate = 0.01
        self.lr = learning_rate
        if lr_scheduler is not None and learning_rate is not None \
                and lr_scheduler.base_lr != learning_rate:
            warnings.warn(f'learning rate from ``lr_scheduler`` ({lr_scheduler.base_lr}) has '
                          f'been overwritten by ``learning_rate`` in optimizer '
                          f'({learning_rate}).', UserWarning, stacklevel=2)
            lr_scheduler.base_lr = learning_rate
        self.wd = wd
        self.lr_mult = {}
        self.wd_mult = {}
        self.begin_num_update = begin_num_update
        self.num_update = begin_num_update
        self._index_update_count = {}
        self.clip_gradient = clip_gradient
        self.multi_precision = multi_precision
        if param_idx2name is None:
            param_idx2name = {}
        if not isinstance(param_idx2name, dict):
            raise TypeError('param_idx2name must be a dict from parameter index to name, got '
                            f'{type(param_idx2name).__name__}')
        self.idx2name = dict(param_idx2name)
        self.param_dict = param_dict if param_dict else {}
        self._skip_flag = None
        self._tables = {}
        self.set_lr_mult({})
        self.set_wd_mult({})

    # ---- registry ---------------------------------------------------------------------
    @staticmethod
    def register(klass):
        """Class decorator: make ``klass`` creatable by its lower-case name."""
        if not isinstance(klass, type):
            raise TypeError('register expects an Optimizer class')
        name = klass.__name__.lower()
        if name in Optimizer.opt_registry and Optimizer.opt_registry[name] is not klass:
            warnings.warn(f'optimizer {klass.__module__}.{klass.__name__} overrides the '
                          f'registered {Optimizer.opt_registry[name].__name__}', stacklevel=2)
        Optimizer.opt_registry[name] = klass
        return klass

    @staticmethod
    def create_optimizer(name, **kwargs):
        """An optimizer by its registered name (case-insensitive): ``create('adam', ...)``."""
        klass = Optimizer.opt_registry.get(str(name).lower())
        if klass is None:
            raise ValueError(f'Cannot find optimizer {name!r}; registered optimizers: '
                             f'{sorted(Optimizer.opt_registry)}')
        return klass(**kwargs)

    # ---- learning rate ----------------------------------------------------------------
    @property
    def learning_rate(self):
        """The current learning rate (the scheduler's value at ``num_update`` if any)."""
        if self.lr_scheduler is not None:
            return self.lr_scheduler(self.num_update)
        return self.lr

    def set_learning_rate(self, lr):
        """Set the learning rate (not allowed when an ``lr_scheduler`` drives it)."""
        if self.lr_scheduler is not None:
            raise UserWarning('LRScheduler of the optimizer has already been defined. Note that '
                              'set_learning_rate can mutate the value of the learning rate of '
                              'the optimizer only when the LRScheduler of the optimizer is '
                              'undefined.')
        self.lr = lr

    def set_lr_mult(self, args_lr_mult):
        """Per-parameter learning-rate multipliers: dict of index or name -> float."""
        self.lr_mult = dict(args_lr_mult)

    def set_wd_mult(self, args_wd_mult):
        """Per-parameter weight-decay multipliers: dict of index or name -> float.

        Parameters named in ``param_idx2name`` whose name does not end in ``weight`` or
        ``gamma`` (biases, BatchNorm beta...) default to 0, as in MXNet.
        """
        self.wd_mult = {}
        for name in self.idx2name.values():
            if not (name.endswith(('_weight', '_gamma', '.weight', '.gamma'))
                    or name in ('weight', 'gamma')):
                self.wd_mult[name] = 0.0
        self.wd_mult.update(args_wd_mult)

    # ---- bookkeeping ----------------------------------------------------------------------
    def _update_count(self, index):
        """Count one update of ``index`` (or of each index of a list)."""
        counts = self._index_update_count
        for idx in (index if isinstance(index, (list, tuple)) else (index,)):
            c = counts.get(idx, self.begin_num_update) + 1
            counts[idx] = c
            if c > self.num_update:
                self.num_update = c

    def _get_lrs(self, indices):
        lr = self.lr_scheduler(self.num_update) if self.lr_scheduler is not None else self.lr
        lrs = []
        for index in indices:
            if index in self.param_dict:
                lrs.append(lr * self.param_dict[index].lr_mult)
            elif index in self.lr_mult:
                lrs.append(lr * self.lr_mult[index])
            elif index in self.idx2name:
                lrs.append(lr * self.lr_mult.get(self.idx2name[index], 1.0))
            else:
                lrs.append(lr)
        return lrs

    def _get_lr(self, index):
        return self._get_lrs([index])[0]

    def _get_wds(self, indices):
        wds = []
        for index in indices:
            if index in self.param_dict:
                wds.append(self.wd * self.param_dict[index].wd_mult)
            elif index in self.wd_mult:
                wds.append(self.wd * self.wd_mult[index])
            elif index in self.idx2name:
                wds.append(self.wd * self.wd_mult.get(self.idx2name[index], 1.0))
            else:
                wds.append(self.wd)
        return wds

    def _get_wd(self, index):
        return self._get_wds([index])[0]

    @property
    def _clip(self):
        """The clipping bound, or None when clipping is off."""
        c = self.clip_gradient
        return float(c) if c is not None and c > 0 else None

    # ---- states and updates -----------------------------------------------------------------
    def create_state(self, index, weight):
        """The auxiliary state (momentum, moments...) of a weight: None, an NDArray or a tuple
        of them. Called once per weight, before its first update."""
        return None

    #: Gluon's order of a multi-precision state: ``(weight32, state)`` for most optimizers,
    #: ``(state, weight32)`` for SGD, NAG and LARS (set False there).
    _master_first = True

    def create_state_multi_precision(self, index, weight):
        """Like :meth:`create_state`; with ``multi_precision`` and a float16 weight the state
        also holds a float32 master copy of the weight, in MXNet 1.9's order:
        ``(weight32, state)``, or ``(state, weight32)`` for SGD, NAG and LARS."""
        if self.multi_precision and weight.dtype == np.float16:
            with weight.context.use():
                master = _wrap(weight._data.astype(np.float32), weight.context)
            inner = self.create_state(index, master)
            return (master, inner) if self._master_first else (inner, master)
        if weight.dtype == np.float16:
            warnings.warn('Accumulating with float16 in optimizer can lead to poor accuracy or '
                          'slow convergence. Consider using multi_precision=True option of the '
                          f'{type(self).__name__} optimizer', stacklevel=2)
        return self.create_state(index, weight)

    def _split_multi_precision(self, weight, state):
        """``(weight32, inner state)`` of a multi-precision state, or None for another state."""
        if not (self.multi_precision and weight.dtype == np.float16
                and isinstance(state, tuple) and len(state) == 2):
            return None
        master, inner = state if self._master_first else (state[1], state[0])
        if isinstance(master, NDArray) and master.dtype == np.float32:
            return master, inner
        return None

    def update(self, index, weight, grad, state):
        """Update ``weight`` in place from ``grad`` and ``state`` (also in place).

        Args:
            index: the parameter's index (or a list of indices, with lists of weights,
                gradients and states: all are counted before the learning rates are read,
                as MXNet's aggregated updates do).
            weight: NDArray.
            grad: NDArray, or a RowSparseGrad.
            state: what :meth:`create_state` returned.
        """
        if isinstance(index, (list, tuple)):
            self._update_count(index)
            for i, w, g, s, lr, wd in zip(index, weight, grad, state, self._get_lrs(index),
                                          self._get_wds(index)):
                run_on(w.context, self._step, i, w, g, s, lr, wd)   # on the weight's device
            return
        self._update_count(index)
        run_on(weight.context, self._step, index, weight, grad, state, self._get_lr(index),
               self._get_wd(index))

    def update_multi_precision(self, index, weight, grad, state):
        """:meth:`update`, through the float32 master copy for float16 weights."""
        if isinstance(index, (list, tuple)):
            for i, w, g, s in zip(index, weight, grad, state):
                self.update_multi_precision(i, w, g, s)
            return
        with weight.context.use():          # (subclasses may override update itself)
            parts = self._split_multi_precision(weight, state)
            if parts is None:
                self.update(index, weight, grad, state)
                return
            master, inner = parts
            if _is_sparse(grad):
                grad = grad.astype(np.float32)
            else:
                grad = _wrap(_data(grad).astype(np.float32), weight.context)
            self.update(index, master, grad, inner)
            weight._data[...] = master._data.astype(weight.dtype)

    def _step(self, index, weight, grad, state, lr, wd):
        raise NotImplementedError(f'{type(self).__name__} must implement update() or _step()')

    # ---- many parameters at once (device multi-tensor kernels) ---------------------------
    #: ``_fused_update(xp, table, weights, grads, states, indices, lrs, wds, skip)`` of the
    #: optimizers with a multi-tensor kernel (None: parameters are updated one by one).
    _fused_update = None
    #: the class whose ``_step`` the fused kernel reproduces (a subclass overriding
    #: ``_step``, ``update`` or ``update_multi_precision`` is updated one by one)
    _fused_step_owner = None

    def set_skip_flag(self, flag):
        """Skip every update while the device scalar ``flag`` (int32; another integer or
        bool dtype costs one conversion kernel per update) is non-zero.

        The multi-tensor kernels read the flag on the device, so nothing is synchronised:
        a step whose loss was not finite leaves the weights and states as they were
        without the host looking (the Estimator raises at its next read-back). Updates
        that run one by one (other optimizers, row-sparse gradients, float16 weights)
        read the flag on the host when it is set. ``None`` clears it.
        """
        self._skip_flag = flag

    def _fusable(self):
        cls = type(self)
        owner = self._fused_step_owner
        return (self._fused_update is not None and owner is not None
                and cls._step is owner._step and cls.update is Optimizer.update
                and cls.update_multi_precision is Optimizer.update_multi_precision)

    def update_many(self, indices, weights, grads, states, skip=None, masked_update=None):
        """Update several parameters (lists of indices, weights, gradients, states), as
        :meth:`update_multi_precision` does for each. On a device, the parameters of one
        device and dtype go through the optimizer's multi-tensor kernel in one launch.

        ``skip`` (a device bool scalar: AMP's overflow flag) skips this update on the device
        besides :meth:`set_skip_flag`'s flag; updates that run one by one then go through
        ``masked_update(update, index, weight, grad, state)``, which undoes them where the
        flag is set (without reading it on the host)."""
        fused, rest = [], []
        fusable = self._fusable()
        for item in zip(indices, weights, grads, states):
            w, g = item[1], item[2]
            if fusable and isinstance(g, NDArray) and _use_fused(w.xp, w.dtype) \
                    and g.dtype == w.dtype and g.context == w.context \
                    and _flat(w) and _flat(g) and all(map(_flat, _arrays(item[3]))):
                fused.append(item)
            else:
                rest.append(item)
        if rest:
            if self._skip_flag is not None and int(self._skip_flag):   # a host read
                self._update_count([i for i, *_ in rest])
            else:
                for i, w, g, s in rest:
                    if masked_update is None:
                        self.update_multi_precision(i, w, g, s)
                    else:
                        masked_update(self.update_multi_precision, i, w, g, s)
        groups = {}
        for item in fused:
            groups.setdefault((item[1].context, item[1].dtype.str), []).append(item)
        for (ctx, _), group in groups.items():
            run_on(ctx, self._update_group, ctx, group, skip)

    def _update_group(self, ctx, group, extra_skip=None):
        indices = [i for i, *_ in group]
        self._update_count(indices)
        lrs, wds = self._get_lrs(indices), self._get_wds(indices)
        skip = self._skip_flag
        if skip is not None and context_of(skip) != ctx:
            skip = ctx.xp.asarray(skip)                   # a peer copy, no host read
        if skip is not None and skip.dtype != np.int32:
            skip = skip.astype(np.int32)                  # the kernels read an int
        if extra_skip is not None:                        # AMP's overflow flag, on the device
            if context_of(extra_skip) != ctx:
                extra_skip = ctx.xp.asarray(extra_skip)
            extra_skip = extra_skip.astype(np.int32)
            skip = extra_skip if skip is None else skip | extra_skip
        table = self._tables.get(ctx)
        if table is None:
            from ..backend.kernels.optim import TensorTable
            table = self._tables[ctx] = TensorTable()
        self._fused_update(ctx.xp, table, [w._data for _, w, _, _ in group],
                           [g._data for _, _, g, _ in group], [s for *_, s in group],
                           indices, [float(v) for v in lrs], [float(v) for v in wds], skip)

    def updates_rows_only(self, grad):
        """True if an update with this gradient changes only the gradient's rows (a lazy
        row-sparse update); the Trainer then copies only those rows to other devices."""
        return _is_sparse(grad) and self._supports_lazy and getattr(self, 'lazy_update', False)

    # ---- checkpointing ----------------------------------------------------------------------
    _NOT_SAVED = frozenset({'param_dict', 'lr_scheduler', '_index_update_count', 'lr_mult',
                            'wd_mult', 'idx2name', '_skip_flag', '_tables'})

    def state_dict(self):
        """The optimizer's hyper-parameters, update counts and scheduler state as a
        JSON-serializable dict (optimizer *states* such as momentum are kept by the Trainer).
        """
        hyper = {}
        for k, v in vars(self).items():
            if k in self._NOT_SAVED:
                continue
            if isinstance(v, (bool, int, float, str, type(None))):
                hyper[k] = v
        return {
            'type': type(self).__name__,
            'hyper': hyper,
            'index_update_count': _encode_keyed(self._index_update_count),
            'lr_mult': _encode_keyed(self.lr_mult),
            'wd_mult': _encode_keyed(self.wd_mult),
            'idx2name': _encode_keyed(self.idx2name),
            'lr_scheduler': None if self.lr_scheduler is None else self.lr_scheduler.state_dict(),
        }

    def load_state_dict(self, state):
        """Restore what :meth:`state_dict` returned (same optimizer type required)."""
        from .. import lr_scheduler as _lrs
        if state.get('type') != type(self).__name__:
            raise ValueError(f'load_state_dict: the state is of a {state.get("type")} '
                             f'optimizer, not a {type(self).__name__}')
        for k, v in state['hyper'].items():
            setattr(self, k, v)
        self._index_update_count = _decode_keyed(state['index_update_count'])
        self.lr_mult = _decode_keyed(state.get('lr_mult', []))
        self.wd_mult = _decode_keyed(state.get('wd_mult', []))
        self.idx2name = _decode_keyed(state.get('idx2name', []))
        sched = state.get('lr_scheduler')
        if sched is None:
            self.lr_scheduler = None
        elif self.lr_scheduler is not None and type(self.lr_scheduler).__name__ == sched['type']:
            self.lr_scheduler.load_state_dict(sched)
        else:
            self.lr_scheduler = _lrs.from_state_dict(sched)

    def __repr__(self):
        return f'{type(self).__name__}(learning_rate={self.lr}, wd={self.wd})'


def _encode_keyed(d):
    """A dict with int or str keys as JSON: a list of [key, value] pairs (JSON objects
    would turn int keys into strings)."""
    return [[k, v] for k, v in d.items()]


def _decode_keyed(pairs):
    return {k: v for k, v in pairs}


register = Optimizer.register
create = Optimizer.create_optimizer


def _flat(a):
    """C-contiguous data: what the multi-tensor kernels index as flat vectors."""
    return a._data.flags.c_contiguous


def _arrays(state):
    """The NDArrays of an optimizer state (None, an NDArray, or nested tuples/lists)."""
    if isinstance(state, NDArray):
        return [state]
    if isinstance(state, (tuple, list)):
        return [a for s in state for a in _arrays(s)]
    return []


def skipped_standin(xp, skip, arrays, update):
    """Run ``update()`` (NumPy kernels changing ``arrays`` in place) unless the device flag
    ``skip`` (or None) is set, deciding on the device: the arrays' old values are kept
    where the flag is set. For the simulated device's stand-ins of the fused updates."""
    if skip is None:
        update()
        return
    saved = [a.copy() for a in arrays]
    update()
    keep = skip != 0
    for a, old in zip(arrays, saved):
        a[...] = xp.where(keep, old, a)
