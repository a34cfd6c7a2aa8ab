"""The Trainer's gradient reduction across ranks: flat buckets, overlapped with backward.

A :class:`GradientReducer` serves one Trainer with ``kvstore='dist_sync'``:

- **Identical start.** Parameters are broadcast from rank 0 when the Trainer is built
  (those already initialized) and at the first reduction (those initialized later, at the
  first forward pass: deferred shapes). Optimizer states loaded before the first step are
  broadcast then too. A parameter initialized at the first forward pass that differed
  between ranks means the first step's gradients came from different weights; the reducer
  warns once (seed ``xpnet.random`` the same on every rank, or give ``in_units``).
- **Buckets.** Dense gradients are packed into flat buffers of about ``bucket_mb``
  megabytes (one dtype each), in the order the gradients become final in the backward pass
  (a property of the graph; observed on rank 0 in the second step and broadcast, so every
  rank uses one layout; reverse parameter order before that). Each gradient is copied into
  its bucket once it is final (the autograd engine's leaf-ready hook,
  :func:`xpnet.autograd.register_ready_hook`); the replicas of ``context=[...]`` are summed
  into it first, in context order. A large gradient (``bucket_mb``, or 1 MB on the host)
  is a bucket alone, reduced from its own buffer without packing copies.
- **Overlap.** A bucket whose gradients are all final starts a non-blocking allreduce
  (``MPI_Iallreduce`` on host memory, NCCL on a communication stream for GPUs) while the
  backward pass goes on. Buckets start strictly in index order on every rank (a ready
  bucket waits for the ones before it), so the collectives match across ranks whatever the
  timing. MPI advances a host reduction whenever it is polled: at every later hook and in
  :meth:`reduce`; no communication thread competes with the computation for a core.
- **Finish** (:meth:`reduce`, from ``Trainer.allreduce_grads``/``step``): buckets not
  started yet (a parameter unused in this pass, ``grad_req='add'``) start now, in order; a
  small allreduce carries every parameter's freshness (and the step's batch size); each
  bucket is waited for and copied back into every replica's gradient buffer.
- **Sums, not means.** After :meth:`reduce` each gradient is the sum over every rank and
  device; the Trainer divides by the global batch size (the sum of the ranks' batch sizes).
- **Row-sparse gradients** (``Embedding(sparse_grad=True)``) are not densified: each rank's
  rows and values are gathered (``MPI_Allgatherv``, through the host) and summed per row
  (``coalesce``), so lazy optimizers still touch only the rows some rank used. This costs
  ``size() x rows x row_bytes`` per step against ``2 x table_bytes`` for a dense ring
  allreduce: cheaper while the ranks together touch less than about half the table.
"""
import os
import threading
import warnings

import numpy as np

from .. import autograd
from ..backend import cpu, to_device, to_host
from ..ndarray import RowSparseGrad
from ..utils import _to_ctx
from .comm import wait_all

__all__ = ['GradientReducer', 'DEFAULT_BUCKET_MB']

DEFAULT_BUCKET_MB = 25.0
# A host gradient this large is reduced alone, straight from its buffer: packing it would
# cost two copies (~0.15 ms per MB each), more than one more collective's latency.
_HOST_ALONE = 1 << 20


class _Bucket:
    """Consecutive parameters of one dtype, reduced as one flat buffer; or one parameter
    alone, whose gradient is reduced straight into ``flat`` (its result buffer)."""
    __slots__ = ('index', 'members', 'flat', 'ctx', 'alone', 'expected', 'seen', 'pending',
                 'dirty')

    def __init__(self, index, members, dtype, ctx):
        self.index, self.members, self.ctx = index, members, ctx
        self.alone = len(members) == 1
        shape = members[0][3] if self.alone else (sum(m[2] for m in members),)
        with ctx.use():
            self.flat = ctx.xp.zeros(shape, dtype=dtype)
        self.expected = 0          # leaves (parameter replicas) whose hooks complete it
        self.seen = set()
        self.pending = None        # the allreduce in flight
        self.dirty = False         # a member's gradient changed after the bucket started


class GradientReducer:
    """Sums a Trainer's gradients over every rank (see the module docstring).

    Args:
        params: the Trainer's Parameters, in its order.
        comm: a private :class:`~xpnet.distributed.comm.Communicator`.
        bucket_mb: bucket size in megabytes (default ``XPNET_DIST_BUCKET_MB`` or 25).
    """

    def __init__(self, params, comm, bucket_mb=None):
        if bucket_mb is None:
            bucket_mb = float(os.environ.get('XPNET_DIST_BUCKET_MB', DEFAULT_BUCKET_MB))
        if not bucket_mb > 0:
            raise ValueError(f'bucket_mb must be > 0, got {bucket_mb!r}')
        self._params, self._comm = params, comm
        self._bucket_bytes = max(1, int(bucket_mb * (1 << 20)))
        _check_thread_level(comm, params)
        self._lock = threading.Lock()
        self._buckets, self._slots, self._handles = [], {}, []
        self._signature = None
        self._next = 0             # index of the next bucket to start
        self._log = []             # parameter indices in hook order (this pass)
        self._reductions = 0
        self._synced = set()       # parameters broadcast from rank 0 so far
        self._warned = False
        self._sync_new_params(warn=False)

    # ---- identical start ------------------------------------------------------------------
    def _sync_new_params(self, warn=True):
        """Broadcast from rank 0 every parameter initialized since the last call."""
        differed = 0
        for i, p in enumerate(self._params):
            if i in self._synced or not p._data:
                continue
            before = p._data[0].asnumpy() if warn else None
            _broadcast_replicas(self._comm, p._data)
            if warn and not np.array_equal(before, p._data[0].asnumpy()):
                differed = 1
            self._synced.add(i)
        if warn and not self._warned:
            flag = np.array([differed], np.int64)
            self._comm.allreduce(flag, _HOST)
            self._warned = True
            if flag[0] and self._comm.rank == 0:
                warnings.warn(
                    'Trainer(kvstore=dist_sync): parameters initialized at the first forward '
                    'pass differed between ranks, so the first step averaged gradients of '
                    'different weights (they are identical from now on). Seed every rank '
                    'alike (xpnet.random.seed(n)) or give in_units/in_channels so '
                    'initialize() creates them before the Trainer.', stacklevel=4)

    # ---- layout -----------------------------------------------------------------------------
    def _layout_signature(self):
        return tuple((tuple(id(d) for d in p._data) if p._data else None, p.grad_req,
                      p.grad_stype, str(p.dtype)) for p in self._params)

    def _dense(self, i):
        p = self._params[i]
        return p._data is not None and p.grad_req != 'null' and p.grad_stype == 'default'

    def _build(self, order):
        """Buckets over the dense parameters, in ``order`` (parameter indices)."""
        for h in self._handles:
            h.remove()
        self._buckets, self._slots, self._handles = [], {}, []
        dense = [i for i in order if self._dense(i)]
        seen = set(dense)
        dense += [i for i in reversed(range(len(self._params)))
                  if self._dense(i) and i not in seen]
        groups = self._group(dense)
        for index, group in enumerate(groups):
            members, offset = [], 0
            for i, _ in group:
                d = self._params[i]._data[0]
                members.append((i, offset, d.size, d.shape))
                offset += d.size
            first = self._params[group[0][0]]._data[0]
            bucket = _Bucket(index, members, group[0][1], first.context)
            for i, _ in group:
                for d in self._params[i]._data:
                    self._slots[id(d)] = (bucket, i)
                    self._handles.append(autograd.register_ready_hook(d, self._on_ready))
                    bucket.expected += 1
            self._buckets.append(bucket)
        self._signature = self._layout_signature()

    def _group(self, dense):
        """Split parameter indices (in the order their gradients become ready) into buckets:
        a large gradient alone, the others packed per dtype up to the bucket size (a large
        one between them does not close the pack); buckets in the order they complete."""
        done, packs = [], {}         # packs: dtype -> [members, bytes]
        for pos, i in enumerate(dense):
            d = self._params[i]._data[0]
            size = d.size * d.dtype.itemsize
            if size >= self._bucket_bytes or (d.context.xp is np and size >= _HOST_ALONE):
                done.append((pos, [(i, d.dtype)]))
                continue
            pack = packs.setdefault(d.dtype, [[], 0])
            if pack[0] and pack[1] + size > self._bucket_bytes:
                done.append((pack[0][-1][2], pack[0]))
                pack[:] = [[], 0]
            pack[0].append((i, d.dtype, pos))
            pack[1] += size
        done += [(members[-1][2], members) for members, _ in packs.values() if members]
        return [[m[:2] for m in members] for _, members in sorted(done, key=lambda g: g[0])]

    def _rebuild(self):
        """Build the layout in rank 0's hook order of the latest pass (every rank gets the
        same layout; parameters it did not see go last, in reverse order)."""
        order = np.full(len(self._params), -1, np.int64)
        seen = list(dict.fromkeys(self._log))
        order[:len(seen)] = seen
        self._comm.broadcast(order, _HOST, 0)
        self._build([int(i) for i in order if i >= 0])

    # ---- during backward --------------------------------------------------------------------
    def _on_ready(self, leaf):
        """Leaf-ready hook: count the replica in; start the buckets that became complete."""
        slot = self._slots.get(id(leaf))
        if slot is None or leaf._grad_req != 'write' \
                or getattr(leaf._grad, '_sparse', None) is not None:
            return
        bucket, i = slot
        with self._lock:
            self._log.append(i)
            if id(leaf) in bucket.seen:
                bucket.dirty = bucket.pending is not None
                return
            bucket.seen.add(id(leaf))
            if len(bucket.seen) == bucket.expected:
                self._start_ready()
            self._poll()

    def _start_ready(self):
        buckets = self._buckets
        while self._next < len(buckets) and len(buckets[self._next].seen) == \
                buckets[self._next].expected:
            self._start(buckets[self._next])
            self._next += 1

    def _start(self, bucket):
        """Pack the bucket's gradients (replicas summed, stale ones as zeros); start it."""
        flat, ctx = bucket.flat, bucket.ctx
        if bucket.alone:
            with ctx.use():
                send = self._local_sum(bucket.members[0][0], ctx)
                bucket.pending = self._comm.iallreduce(send, ctx, out=flat)
            return
        with ctx.use():
            for i, offset, size, _ in bucket.members:
                view = flat[offset:offset + size]
                first = True
                for d in self._params[i]._data:
                    if not d._fresh_grad or d._grad is None:
                        continue
                    g = d._grad._data.reshape(-1)
                    g = g if d.context == ctx else _to_ctx(g, ctx)
                    if first:
                        view[...] = g
                        first = False
                    else:
                        view += g
                if first:
                    view[...] = 0
            bucket.pending = self._comm.iallreduce(flat, ctx)

    def _local_sum(self, i, ctx):
        """This rank's gradient of parameter ``i`` on ``ctx``: the first replica's buffer
        itself when it is the only one (no copy), else the sum of the fresh replicas."""
        fresh = [d for d in self._params[i]._data if d._fresh_grad and d._grad is not None]
        first = self._params[i]._data[0]
        if not fresh:
            return ctx.xp.zeros(first.shape, dtype=first.dtype)
        g = fresh[0]._grad._data
        if len(fresh) == 1 and fresh[0].context == ctx and g.flags.c_contiguous:
            return g
        total = _to_ctx(g, ctx).copy() if fresh[0].context != ctx else g.copy()
        for d in fresh[1:]:
            total += _to_ctx(d._grad._data, ctx)
        return total

    def _poll(self):
        """Let MPI advance the reductions in flight (host progress happens in MPI calls)."""
        for b in self._buckets[:self._next]:
            if b.pending is not None and not b.pending.test():
                return

    # ---- finish -------------------------------------------------------------------------------
    def reduce(self, batch_size=None):
        """Finish the step's reduction (see the module docstring).

        Args:
            batch_size: this rank's batch size, to be summed over the ranks in the same
                small allreduce as the freshness flags (None: not needed now).

        Returns:
            The global batch size (the sum over ranks), or None without ``batch_size``.
        """
        self._reductions += 1
        if self._reductions == 1:
            self._sync_new_params()
        elif len(self._synced) < len(self._params):
            self._sync_new_params(warn=False)
        if self._signature != self._layout_signature():   # first step, or arrays replaced
            self._drain()
            self._rebuild()
        with self._lock:
            self._next = len(self._buckets)
            for b in self._buckets:
                if b.pending is None:
                    self._start(b)
        fresh = self._exchange_flags(batch_size)
        wait_all([b.pending for b in self._buckets])
        dirty = [b for b in self._buckets if b.dirty]   # written again after they started
        for b in dirty:
            self._start(b)
        wait_all([b.pending for b in dirty])
        for b in self._buckets:
            self._unpack(b, fresh)
        for i, p in enumerate(self._params):
            if p._data and p.grad_req != 'null' and p.grad_stype == 'row_sparse' and fresh[i]:
                self._reduce_sparse(p)
        for i, p in enumerate(self._params):
            if fresh[i] and p._data:
                for d in p._data:
                    d._fresh_grad = True
        if self._reductions == 2:     # the first pass the hooks observed: use its order
            self._rebuild()
        self._reset()
        return None if batch_size is None else float(self._flags_batch)

    def gradients_changed(self):
        """The gradient buffers were written after the backward pass (e.g. replaced by a
        sum over several batches): buckets already started reduce again at :meth:`reduce`,
        from the buffers as they are then."""
        with self._lock:
            for b in self._buckets:
                if b.pending is not None:
                    b.dirty = True

    def global_batch(self, batch_size):
        """The sum of every rank's ``batch_size`` (one small allreduce)."""
        total = np.array([float(batch_size)], np.float64)
        self._comm.allreduce(total, _HOST)
        return float(total[0])        # a Python float: a NumPy scalar would upcast float32

    def _exchange_flags(self, batch_size):
        """Which parameters got a gradient on some rank (and the global batch size)."""
        n = len(self._params)
        vec = np.zeros(n + 1, np.float64)
        for i, p in enumerate(self._params):
            if p._data and p.grad_req != 'null' and all(d._fresh_grad for d in p._data):
                vec[i] = 1
        vec[n] = 0 if batch_size is None else batch_size
        self._comm.allreduce(vec, _HOST)
        self._flags_batch = vec[n]
        return vec[:n] > 0

    def _unpack(self, bucket, fresh):
        flat = bucket.flat
        if bucket.alone:
            i = bucket.members[0][0]
            if fresh[i]:
                self._swap_in(bucket, self._params[i]._data)
            return
        for i, offset, size, shape in bucket.members:
            if not fresh[i]:
                continue            # stale everywhere: leave the buffers as they are
            part = flat[offset:offset + size].reshape(shape)
            for d in self._params[i]._data:
                with d.context.use():
                    d._grad._data[...] = part if d.context == bucket.ctx \
                        else _to_ctx(part, d.context)

    def _swap_in(self, bucket, datas):
        """The reduced gradient becomes the first replica's buffer (no copy); the buffer it
        replaces becomes the bucket's next result buffer."""
        result = bucket.flat
        for d in datas[1:]:
            with d.context.use():
                d._grad._data[...] = _to_ctx(result, d.context)
        first = datas[0]
        if first.context != bucket.ctx:
            with first.context.use():
                first._grad._data[...] = _to_ctx(result, first.context)
            return
        old = first._grad._data
        first._grad._data = result
        if type(old) is type(result) and old.shape == result.shape \
                and old.dtype == result.dtype and old.flags.c_contiguous:
            bucket.flat = old
        else:
            with bucket.ctx.use():
                bucket.flat = bucket.ctx.xp.empty_like(result)

    def _reduce_sparse(self, p):
        """Gather every rank's rows and values; each replica gets their per-row sums."""
        ctx0 = p._data[0].context
        indices, values = [], []
        for d in p._data:
            if not d._fresh_grad or d._grad is None:
                continue
            rows = _rows_of(d._grad)
            indices.append(to_host(rows.indices).astype(np.int64, copy=False))
            values.append(to_host(rows.values))
        row_shape = tuple(p._data[0].shape[1:])
        dtype = p._data[0].dtype
        idx = np.concatenate(indices) if indices else np.zeros(0, np.int64)
        val = np.concatenate(values) if values else np.zeros((0,) + row_shape, dtype)
        idx = self._comm.allgatherv(idx)
        val = self._comm.allgatherv(np.ascontiguousarray(val, dtype=dtype))
        with ctx0.use():
            total = RowSparseGrad(to_device(idx, ctx0), to_device(val, ctx0),
                                  p._data[0].shape).coalesce()
        for d in p._data:
            with d.context.use():
                d._grad._sparse = total if d.context == ctx0 else RowSparseGrad(
                    _to_ctx(total.indices, d.context), _to_ctx(total.values, d.context),
                    total.shape)

    def _drain(self):
        """Finish the reductions in flight (before their buckets are replaced)."""
        for b in self._buckets:
            if b.pending is not None:
                b.pending.wait()
        self._reset()

    def _reset(self):
        for b in self._buckets:
            b.seen.clear()
            b.pending = None
            b.dirty = False
        self._next = 0
        self._log = []

    def close(self):
        """Unregister the hooks (the Trainer is going away)."""
        for h in self._handles:
            h.remove()
        self._handles = []


def _check_thread_level(comm, params):
    """Several devices per rank call MPI from their threads (gradient hooks, SyncBatchNorm):
    that needs MPI_THREAD_MULTIPLE (mpi4py's default)."""
    mpi = comm.mpi
    if mpi is None or not params or len(params[0].list_ctx()) < 2:
        return
    if mpi.Query_thread() < mpi.THREAD_MULTIPLE:
        raise RuntimeError('Trainer(kvstore=dist_sync) with several devices per rank needs MPI '
                           'initialized with MPI_THREAD_MULTIPLE (mpi4py\'s default; do not '
                           'lower mpi4py.rc.thread_level)')


def _rows_of(buf):
    """A gradient buffer as row-sparse: its pending rows, or the non-zero rows of the
    dense buffer (when a user materialized it)."""
    sparse = getattr(buf, '_sparse', None)
    if sparse is not None:
        return sparse
    data = buf._data
    xp = buf.xp
    nz = xp.nonzero((data.reshape(data.shape[0], -1) != 0).any(axis=1))[0]
    return RowSparseGrad(nz, data[nz], data.shape)


def _broadcast_replicas(comm, datas, root=0):
    """``root``'s value of the first replica, in every replica of every rank."""
    first = datas[0]
    with first.context.use():
        comm.broadcast(first._data, first.context, root)
    for d in datas[1:]:
        with d.context.use():
            d._data[...] = _to_ctx(first._data, d.context)


_HOST = cpu(0)
