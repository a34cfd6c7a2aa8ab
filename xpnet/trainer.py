"""Trainer: applies an Optimizer to a set of Parameters, as Gluon's ``gluon.Trainer``.

``step(batch_size)`` sums the gradients of every device replica (``allreduce_grads``), then
updates each parameter once with ``rescale_grad = 1/batch_size`` on the device of its first
replica and copies the new weight to the other replicas, so replicas stay bit-identical.
Optimizer states (momentum, Adam moments) live on that first device.

With ``kvstore='dist_sync'`` (or ``'dist_sync_device'``, ``'dist'``) under MPI, gradients
are also summed over every rank (:mod:`xpnet.distributed.reducer`: flat buckets reduced
while the backward pass runs) and the step divides by the *global* batch size, the sum of
the ``batch_size`` every rank passes: N ranks, each calling ``step(local_batch_size)`` on
its shard, make the update one process makes with ``step(N * local_batch_size)`` on the
whole batch (Horovod's semantics). Parameters (and optimizer states) start from rank 0's.

Gradient freshness follows Gluon: a parameter whose gradient was not written by
``backward()`` since the last step raises ``UserWarning`` (an exception, as in Gluon) unless
``ignore_stale_grad=True``, which skips it. Row-sparse gradients (``Embedding(sparse_grad=
True)``) are consumed by the step: lazy optimizers touch only their rows.

Example::

    trainer = xpnet.Trainer(net.collect_params(), 'sgd', {'learning_rate': 0.1, 'momentum': 0.9})
    with autograd.record():
        loss = loss_fn(net(x), y)
    loss.backward()
    trainer.step(x.shape[0])
"""
import json
import math
import numbers
import re

import numpy as np

from . import optimizer as opt
from .backend import to_device
from .layers.parameter import Parameter, _materialize_sparse
from .ndarray import NDArray, RowSparseGrad, _wrap
from .serialization import MAX_JSON_BYTES, FileFormatError, load_npz, parse_json, save_npz
from .utils import _to_ctx as _to

__all__ = ['Trainer', 'StatesFileError']

_FORMAT = 'xpnet.trainer_states'
_META_KEY = '__meta__'
_STATE_KEY = re.compile(r's(\d+)(?:_\d+)*')
_JSON_SCALARS = (bool, int, float, str, type(None))


class StatesFileError(FileFormatError):
    """A trainer states file is truncated, corrupt, or does not match the trainer."""


class Trainer:
    """Applies an Optimizer on a set of Parameters (Gluon's ``Trainer``).

    Args:
        params: a dict of name -> Parameter (``net.collect_params()``; taken in sorted key
            order, as Gluon does) or a list of Parameters.
        optimizer: an optimizer name (``'sgd'``, ``'adam'``...) or an
            :class:`~xpnet.optimizer.Optimizer`.
        optimizer_params: keyword arguments for the optimizer when given by name, e.g.
            ``{'learning_rate': 0.1, 'wd': 1e-4}``; must be empty with an Optimizer instance.
        kvstore: ``'device'`` (default; also ``'local'``, ``'nccl'``): sum the gradients
            of this process's devices. ``'dist_sync'``, ``'dist_sync_device'``,
            ``'dist_device_sync'``, ``'dist'`` or ``'horovod'``: also sum them over the
            ranks of an MPI job (see the module docstring; without MPI, the same as
            ``'device'``). ``'dist_async'`` is not supported.
        compression_params, update_on_kvstore: accepted for Gluon compatibility. xpnet
            always reduces gradients itself and updates once per parameter (what
            ``update_on_kvstore=True`` does); gradient compression is not supported.
        bucket_mb: with a distributed kvstore, the size of the gradient buckets reduced
            together (default: ``XPNET_DIST_BUCKET_MB`` or 25).

    Example::

        trainer = xpnet.Trainer(net.collect_params(), 'adam', {'learning_rate': 1e-3})
        trainer.step(batch_size)
    """

    def __init__(self, params, optimizer, optimizer_params=None, kvstore='device',
                 compression_params=None, update_on_kvstore=None, bucket_mb=None):
        if isinstance(params, dict):
            names = sorted(params.keys())
            plist = [params[k] for k in names]
        elif isinstance(params, (list, tuple)):
            plist = list(params)
            names = [getattr(p, '_structure_name', None) or getattr(p, 'name', str(i))
                     for i, p in enumerate(plist)]
        else:
            raise ValueError('Trainer: params must be a dict of Parameters (e.g. '
                             f'net.collect_params()) or a list of them, got '
                             f'{type(params).__name__}')
        self._params, self._names, seen = [], [], set()
        for name, p in zip(names, plist):
            if not isinstance(p, Parameter):
                raise ValueError(f'Trainer: params must hold Parameters, but {name!r} is a '
                                 f'{type(p).__name__}')
            if id(p) in seen:        # a shared parameter listed twice is updated once
                continue
            seen.add(id(p))
            self._params.append(p)
            self._names.append(name)
        if compression_params:
            raise NotImplementedError('Trainer: gradient compression is not supported by xpnet')
        self._kvstore = kvstore
        self._update_on_kvstore = update_on_kvstore
        self._contexts = self._check_contexts()
        self._init_optimizer(optimizer, optimizer_params)
        self._scale = self._optimizer.rescale_grad
        self._states = {}           # index -> optimizer state, on the first context
        self._reduced = False       # allreduce_grads() ran since the last update
        self._dist = _distributed_reducer(kvstore, self._params, bucket_mb)
        self._dist_steps = 0
        self._amp_loss_scaler = None   # set by xpnet.amp.init_trainer

    # ---- setup -------------------------------------------------------------------------
    def _check_contexts(self):
        contexts = None
        for name, p in zip(self._names, self._params):
            try:
                ctx = p.list_ctx()
            except RuntimeError as err:
                raise RuntimeError(f'Trainer: parameter {name!r} is not initialized; call '
                                   'net.initialize() before creating the Trainer') from err
            if contexts is not None and ctx != contexts:
                raise ValueError(f'Trainer: all Parameters must be initialized on the same '
                                 f'contexts, but {name!r} is on {ctx} while the previous ones '
                                 f'are on {contexts}')
            contexts = ctx
        return contexts or []

    def _init_optimizer(self, optimizer, optimizer_params):
        param_dict = dict(enumerate(self._params))
        if isinstance(optimizer, opt.Optimizer):
            if optimizer_params:
                raise ValueError('Trainer: optimizer_params must be None when optimizer is an '
                                 f'Optimizer instance ({type(optimizer).__name__}) rather than '
                                 'a name')
            self._optimizer = optimizer
            # Not copied: lr_mult/wd_mult changed on a Parameter later take effect.
            optimizer.param_dict = param_dict
        elif isinstance(optimizer, str):
            self._optimizer = opt.create(optimizer, param_dict=param_dict,
                                         **(optimizer_params or {}))
        else:
            raise TypeError(f'Trainer: optimizer must be a name or an Optimizer, got '
                            f'{type(optimizer).__name__}')

    # ---- learning rate --------------------------------------------------------------------
    @property
    def learning_rate(self):
        """The optimizer's current learning rate."""
        return self._optimizer.learning_rate

    @property
    def optimizer(self):
        """The :class:`~xpnet.optimizer.Optimizer` in use."""
        return self._optimizer

    def set_learning_rate(self, lr):
        """Set the optimizer's learning rate (an error if a scheduler drives it)."""
        self._optimizer.set_learning_rate(lr)

    # ---- the step -------------------------------------------------------------------------
    def step(self, batch_size, ignore_stale_grad=False):
        """One update: :meth:`allreduce_grads` then :meth:`update`.

        Call after ``backward()`` and outside ``autograd.record()``.

        Args:
            batch_size: gradients are scaled by ``1/batch_size`` (use 1 if the loss is
                already a mean).
            ignore_stale_grad: skip parameters whose gradient was not written by
                ``backward()`` since the last step instead of raising.

        Raises:
            ValueError: ``batch_size`` is not a positive, finite number.
        """
        batch_size = _check_batch_size(batch_size, 'step', self._dist is not None)
        if self._dist is not None:
            total = _check_batch_size(self._dist_reduce(batch_size), 'step (summed over ranks)')
            self._optimizer.rescale_grad = self._scale / total
        else:
            self._optimizer.rescale_grad = self._scale / batch_size
            self.allreduce_grads()
        self._update(ignore_stale_grad)

    def allreduce_grads(self):
        """Sum each parameter's gradient over its device replicas, in every replica (and,
        with a distributed kvstore, over every rank: the sum, not yet divided by anything).

        Separate from :meth:`update` so gradients can be inspected or clipped in between
        (e.g. with :func:`xpnet.utils.clip_global_norm`).
        """
        if self._dist is not None:
            self._dist_reduce(None)
        elif len(self._contexts) > 1:
            for p in self._params:
                if p.grad_req != 'null' and p._data is not None:
                    _allreduce(p._data)
        self._reduced = True
        if self._amp_loss_scaler is not None:   # true gradients from here on (clipping...)
            self._amp_loss_scaler.unscale(self._params)

    def update(self, batch_size, ignore_stale_grad=False):
        """Apply the optimizer with gradients scaled by ``1/batch_size``.

        With several devices, gradients not yet reduced by :meth:`allreduce_grads` are
        reduced first, so every replica gets the same update. With a distributed kvstore
        the gradients are divided by the sum of every rank's ``batch_size``.

        Raises:
            ValueError: ``batch_size`` is not a positive, finite number.
        """
        batch_size = _check_batch_size(batch_size, 'update', self._dist is not None)
        if self._dist is not None:
            total = self._dist.global_batch(batch_size) if self._reduced \
                else self._dist_reduce(batch_size)
            total = _check_batch_size(total, 'update (summed over ranks)')
            self._optimizer.rescale_grad = self._scale / total
        else:
            self._optimizer.rescale_grad = self._scale / batch_size
            if not self._reduced:
                self.allreduce_grads()
        self._update(ignore_stale_grad)

    def _dist_reduce(self, batch_size):
        """Reduce over the ranks; at the first step every rank takes rank 0's optimizer
        states. Returns the global batch size (None without ``batch_size``)."""
        total = self._dist.reduce(batch_size)
        if self._dist_steps == 0:
            self.broadcast_states(root=0)
        self._dist_steps += 1
        self._reduced = True
        return total

    def broadcast_states(self, root=0):
        """Give every rank ``root``'s optimizer states and counters (collective: call on
        every rank; the Trainer does it at its first distributed step)."""
        from . import distributed as dist
        state = dist.broadcast_object(self.state_dict() if dist.rank() == root else None, root)
        if dist.rank() != root:
            self.load_state_dict(state)

    def _update(self, ignore_stale_grad=False):
        todo = []
        for i, p in enumerate(self._params):
            if p.grad_req == 'null':
                continue
            if p._data is None and ignore_stale_grad:
                continue        # never used in a forward pass yet (deferred init): stale
            p._check()
            datas = p._data
            fresh = [d._fresh_grad for d in datas]
            if not all(fresh):
                if not ignore_stale_grad:
                    ctx = datas[fresh.index(False)].context
                    raise UserWarning(
                        f'Gradient of Parameter `{self._names[i]}` on context {ctx} has not '
                        'been updated by backward since last `step`. This could mean a bug in '
                        'your model that made it only use a subset of the Parameters (Blocks) '
                        'for this iteration. If you are intentionally only using a subset, '
                        'call step with ignore_stale_grad=True to suppress this warning and '
                        'skip updating of Parameters with stale gradient')
                if not any(fresh):
                    continue
            todo.append(i)
        optimizer = self._optimizer
        scaler = self._amp_loss_scaler
        # AMP: a device flag, set when the scaled gradients overflowed, skips the updates
        skip = None if scaler is None else scaler.begin_update(self._params)
        weights, grads, states = [], [], []
        for i in todo:
            weight = self._params[i]._data[0]
            buf = weight._grad
            sparse = getattr(buf, '_sparse', None)
            weights.append(weight)
            grads.append(sparse if sparse is not None else buf)
            state = self._states.get(i, _MISSING)
            if state is _MISSING:
                with weight.context.use():     # CuPy computes on the current device
                    state = self._states[i] = optimizer.create_state_multi_precision(i, weight)
            states.append(state)
        # all at once: on a device one multi-tensor kernel per device and dtype
        if skip is None:
            optimizer.update_many(todo, weights, grads, states)
        else:
            optimizer.update_many(todo, weights, grads, states, skip=skip,
                                  masked_update=scaler.masked_update)
        for i, grad in zip(todo, grads):
            datas = self._params[i]._data
            weight, sparse = datas[0], grad if getattr(grad, 'is_row_sparse', False) else None
            if len(datas) > 1:
                rows = grad.indices if sparse is not None and \
                    optimizer.updates_rows_only(grad) else None
                _broadcast_weight(weight, datas[1:], rows)
            for d in datas:
                d._fresh_grad = False
                if d._grad is not None:
                    d._grad._sparse = None
        if skip is not None:
            scaler.finish_update()
        self._reduced = False

    def zero_grad(self):
        """Set every parameter's gradient to zero (e.g. between ``grad_req='add'`` steps)."""
        for p in self._params:
            if p.grad_req != 'null':
                p.zero_grad()

    # ---- checkpointing ---------------------------------------------------------------------
    def state_dict(self):
        """The optimizer's states and bookkeeping: ``{'arrays': {key: host ndarray},
        'meta': JSON-able dict}``. Restoring it with :meth:`load_state_dict` continues
        training bit-identically (momentum and Adam moments, per-parameter update counts,
        ``num_update``, the learning-rate scheduler's state and, with AMP, the loss
        scaler's)."""
        arrays, entries = {}, []
        for i, (name, p) in enumerate(zip(self._names, self._params)):
            entry = {'index': i, 'name': name,
                     'shape': None if p.shape is None else list(p.shape)}
            if i in self._states:
                entry['state'] = _encode_state(self._states[i], f's{i}', arrays)
            entries.append(entry)
        meta = {'format': _FORMAT, 'version': 2, 'optimizer': self._optimizer.state_dict(),
                'params': entries}
        if self._amp_loss_scaler is not None:
            meta['amp'] = self._amp_loss_scaler.state_dict()
        return {'arrays': arrays, 'meta': meta}

    def load_state_dict(self, state, _source='state_dict'):
        """Restore :meth:`state_dict` output (the same optimizer type and parameters)."""
        meta, arrays = state['meta'], state['arrays']
        if meta.get('format') != _FORMAT:
            raise StatesFileError(f'{_source}: not an xpnet trainer state '
                                  f'(format {meta.get("format")!r})')
        entries = meta['params']
        if len(entries) != len(self._params):
            raise StatesFileError(f'{_source}: it holds states of {len(entries)} parameters '
                                  f'but the trainer has {len(self._params)}')
        kind = meta['optimizer'].get('type')
        if kind != type(self._optimizer).__name__:
            raise StatesFileError(f'{_source}: it holds {kind} states but the trainer uses '
                                  f'{type(self._optimizer).__name__}')
        for entry, name, p in zip(entries, self._names, self._params):
            if entry['shape'] is not None and p.shape is not None and \
                    tuple(entry['shape']) != tuple(p.shape):
                raise StatesFileError(f'{_source}: parameter {entry["name"]!r} has shape '
                                      f'{tuple(entry["shape"])} but the trainer\'s {name!r} '
                                      f'has shape {tuple(p.shape)}')
        states = {}
        for entry, p in zip(entries, self._params):
            if 'state' in entry:
                ctx = p.list_ctx()[0]
                states[entry['index']] = _decode_state(entry['state'], arrays, ctx, _source)
        if meta.get('version', 1) < 2 and not self._optimizer._master_first:
            # version 1 kept SGD/NAG multi-precision states as (weight32, momentum)
            for i, st in states.items():
                if isinstance(st, tuple) and len(st) == 2 and \
                        self._params[i].dtype == np.float16:
                    states[i] = (st[1], st[0])
        self._optimizer.load_state_dict(meta['optimizer'])
        self._optimizer.param_dict = dict(enumerate(self._params))
        self._states = states
        if self._amp_loss_scaler is not None and meta.get('amp') is not None:
            self._amp_loss_scaler.load_state_dict(meta['amp'])

    def save_states(self, fname):
        """Write the optimizer states to ``fname`` (``.npz``: arrays plus the JSON metadata,
        no pickle), atomically: a temporary file in the same directory, fsync'ed, renamed.
        States keep Gluon 1.x's layout (multi-precision SGD/NAG/LARS: ``(momentum,
        weight32)``, others ``(weight32, state)``); files of version 1, which stored SGD/NAG's
        the other way round, are converted when loaded."""
        state = self.state_dict()
        arrays = dict(state['arrays'])
        arrays[_META_KEY] = np.array(json.dumps(state['meta']))
        save_npz(fname, arrays)

    def load_states(self, fname):
        """Restore the optimizer states saved by :meth:`save_states`.

        Raises:
            FileNotFoundError: no such file.
            StatesFileError: the file is truncated, corrupt, or for another optimizer or
                set of parameters (the message names the file).
        """
        source = f'file {fname!r}'
        arrays = load_npz(fname, 'trainer states', StatesFileError,
                          lambda headers: self._check_states_file(headers, source))
        meta = parse_json(arrays.pop(_META_KEY), f'trainer states {source}', StatesFileError)
        _check_meta(meta, self._optimizer, source)
        self.load_state_dict({'arrays': arrays, 'meta': meta}, _source=source)

    def _check_states_file(self, headers, source):
        """The arrays of a states file to read: the metadata record and, for each
        parameter, states of at most its size in float64 (checked before any is read)."""
        meta = headers.get(_META_KEY)
        if meta is None or meta.dtype.kind != 'U' or meta.shape != () or \
                meta.nbytes > 4 * MAX_JSON_BYTES:
            raise StatesFileError(f'{source} is not an xpnet trainer states file (no valid '
                                  'metadata record)')
        wanted = [_META_KEY]
        for name, h in headers.items():
            m = _STATE_KEY.fullmatch(name)
            if name == _META_KEY or m is not None and int(m.group(1)) >= len(self._params):
                continue            # states of other parameters: the metadata check names them
            if m is None or h.dtype.kind not in 'biuf':
                raise StatesFileError(f'{source}: unexpected array {name!r} ({h.dtype}) in a '
                                      'trainer states file')
            shape = self._params[int(m.group(1))].shape
            if shape is not None and all(shape) and h.nbytes > 8 * math.prod(shape):
                raise StatesFileError(f'{source}: state array {name!r} of shape {h.shape} is '
                                      f'larger than its parameter ({shape})')
            wanted.append(name)
        return wanted

    def __repr__(self):
        return (f'Trainer({type(self._optimizer).__name__}, {len(self._params)} parameters, '
                f'contexts={self._contexts})')


_MISSING = object()

_DIST_KVSTORES = ('dist_sync', 'dist_sync_device', 'dist_device_sync', 'dist', 'horovod')


def _distributed_reducer(kvstore, params, bucket_mb):
    """The cross-rank gradient reducer for a distributed ``kvstore`` under MPI, else None."""
    if not isinstance(kvstore, str) or ('dist' not in kvstore and kvstore != 'horovod'):
        if bucket_mb is not None:
            raise ValueError(f'Trainer: bucket_mb applies to distributed kvstores '
                             f"('dist_sync'), not to kvstore={kvstore!r}")
        return None
    if kvstore not in _DIST_KVSTORES:
        raise NotImplementedError(
            f'Trainer: kvstore {kvstore!r} is not supported: xpnet trains across processes '
            "synchronously ('dist_sync', 'dist_sync_device' or 'dist'); asynchronous "
            "updates ('dist_async') are not implemented")
    from . import distributed as dist
    from .distributed.reducer import GradientReducer
    dist.init()
    if dist.size() == 1:
        return None
    return GradientReducer(params, dist.communicator('trainer'), bucket_mb)


def _check_batch_size(batch_size, method, allow_zero=False):
    """``batch_size`` if it is a positive finite number (or 0 with ``allow_zero``: a rank
    without samples this step, in distributed training), else a ValueError saying so."""
    if isinstance(batch_size, numbers.Real) and not isinstance(batch_size, bool) and \
            (0 < batch_size < math.inf or allow_zero and batch_size == 0):
        return batch_size
    raise ValueError(f'Trainer.{method}: batch_size must be a positive number (gradients are '
                     f'scaled by 1/batch_size; pass 1 if the loss is already a mean), got '
                     f'{batch_size!r}')


def _allreduce(datas):
    """Sum the gradients of all replicas into each of them (row-sparse kept sparse when every
    replica's gradient is row-sparse)."""
    bufs = [d._grad for d in datas]
    sparse = [getattr(b, '_sparse', None) for b in bufs]
    ctx0 = datas[0].context
    if all(s is not None for s in sparse):
        xp = ctx0.xp
        with ctx0.use():
            total = RowSparseGrad(
                xp.concatenate([_to(s.indices, ctx0) for s in sparse]),
                xp.concatenate([_to(s.values, ctx0) for s in sparse]), sparse[0].shape
            ).coalesce()
        for d, b in zip(datas, bufs):
            b._sparse = total if d.context == ctx0 else RowSparseGrad(
                _to(total.indices, d.context), _to(total.values, d.context), total.shape)
        return
    for d in datas:
        with d.context.use():
            _materialize_sparse(d)
    total = bufs[0]._data
    with ctx0.use():
        for b in bufs[1:]:
            total += _to(b._data, ctx0)
    for d, b in zip(datas[1:], bufs[1:]):
        with d.context.use():
            b._data[...] = _to(total, d.context)


def _broadcast_weight(weight, others, rows):
    """Copy the updated weight (or only ``rows`` of it) to the other replicas."""
    src = weight._data
    if rows is None:
        for d in others:
            with d.context.use():
                d._data[...] = _to(src, d.context)
        return
    values = src[rows]
    for d in others:
        with d.context.use():
            d._data[_to(rows, d.context)] = _to(values, d.context)


def _encode_state(state, key, arrays):
    """JSON description of a state (None, NDArray, or nested tuples/lists of them); arrays go
    into ``arrays`` under keys derived from ``key``."""
    if state is None:
        return None
    if isinstance(state, NDArray):
        arrays[key] = state.asnumpy()
        return {'array': key}
    if isinstance(state, (tuple, list)):
        return {'tuple' if isinstance(state, tuple) else 'list':
                [_encode_state(s, f'{key}_{k}', arrays) for k, s in enumerate(state)]}
    raise TypeError(f'save_states: cannot save an optimizer state of type '
                    f'{type(state).__name__} (expected None, NDArray or tuples of them)')


def _check_state_desc(desc, source, depth=0):
    if desc is None:
        return
    if not isinstance(desc, dict) or len(desc) != 1 or depth > 8:
        raise StatesFileError(f'{source}: malformed state description {desc!r:.80}')
    (kind, value), = desc.items()
    if kind == 'array' and isinstance(value, str):
        return
    if kind not in ('tuple', 'list') or not isinstance(value, list):
        raise StatesFileError(f'{source}: malformed state description {desc!r:.80}')
    for d in value:
        _check_state_desc(d, source, depth + 1)


def _check_meta(meta, optimizer, source):
    """Refuse trainer-states metadata whose structure or types are not what
    :meth:`Trainer.state_dict` writes (the file is untrusted)."""
    def bad(what):
        raise StatesFileError(f'{source}: malformed trainer states metadata ({what})')
    if meta.get('format') != _FORMAT:
        raise StatesFileError(f'{source}: not an xpnet trainer state (format '
                              f'{meta.get("format")!r:.40})')
    entries, opt_state = meta.get('params'), meta.get('optimizer')
    if not isinstance(entries, list) or not isinstance(opt_state, dict):
        bad("'params' must be a list and 'optimizer' a dict")
    for i, e in enumerate(entries):
        if not isinstance(e, dict) or e.get('index') != i or \
                not isinstance(e.get('name'), str) or not _is_shape(e.get('shape', 0)):
            bad(f'parameter entry {i}')
        _check_state_desc(e.get('state'), source)
    if opt_state.get('type') != type(optimizer).__name__:
        return                  # load_state_dict names both optimizer types
    hyper = opt_state.get('hyper')
    allowed = optimizer.state_dict()['hyper']   # only attributes this optimizer saves
    if not isinstance(hyper, dict) or any(
            k not in allowed or not isinstance(v, _JSON_SCALARS) for k, v in hyper.items()):
        bad('optimizer hyper-parameters')
    for key in ('index_update_count', 'lr_mult', 'wd_mult', 'idx2name'):
        if not _is_pairs(opt_state.get(key, None if key == 'index_update_count' else [])):
            bad(f'optimizer {key}')
    amp = meta.get('amp')
    if amp is not None and not (isinstance(amp, dict) and
                                isinstance(amp.get('loss_scale'), (int, float)) and
                                0 < amp['loss_scale'] < math.inf and
                                type(amp.get('unskipped')) is int and amp['unskipped'] >= 0 and
                                isinstance(amp.get('armed', False), bool)):
        bad('AMP loss scaler state')
    sched = opt_state.get('lr_scheduler')
    if sched is not None and not (isinstance(sched, dict) and isinstance(sched.get('type'), str)
                                  and all(isinstance(k, str) and not k.startswith('__') and
                                          _is_json_value(v) for k, v in sched.items())):
        bad('learning-rate scheduler')


def _is_shape(shape):
    return shape is None or isinstance(shape, list) and all(
        type(d) is int and d >= 0 for d in shape)


def _is_pairs(pairs):
    return isinstance(pairs, list) and all(
        isinstance(p, list) and len(p) == 2 and isinstance(p[0], (int, str))
        and isinstance(p[1], _JSON_SCALARS) for p in pairs)


def _is_json_value(v):
    return isinstance(v, _JSON_SCALARS) or isinstance(v, list) and all(
        isinstance(x, _JSON_SCALARS) for x in v)


def _decode_state(desc, arrays, ctx, source):
    if desc is None:
        return None
    if 'array' in desc:
        key = desc['array']
        if key not in arrays:
            raise StatesFileError(f'{source}: the state array {key!r} is missing')
        host = arrays[key]
        with ctx.use():
            return _wrap(to_device(host, ctx, dtype=host.dtype, copy=True), ctx)
    if 'tuple' in desc:
        return tuple(_decode_state(d, arrays, ctx, source) for d in desc['tuple'])
    return [_decode_state(d, arrays, ctx, source) for d in desc['list']]


