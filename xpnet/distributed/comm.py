"""Collectives on raw ``xp`` arrays among the ranks of the job, each with a deadline.

A :class:`Communicator` owns a duplicate of ``MPI.COMM_WORLD``, so independent users (the
Trainer's gradient buckets, SyncBatchNorm's statistics, user calls) never interleave their
collectives on one communicator: each user's calls happen in the same order on every rank,
whatever the timing between users (and between the device threads of one rank).

Host arrays go through MPI's buffer interface (no pickling). Device arrays go through the
device backend of their context (:mod:`xpnet.distributed.device`): NCCL between GPUs,
CUDA-aware MPI, or a copy through host memory.

Every collective is started non-blocking and waited for by polling with a deadline (see
:mod:`xpnet.distributed.world`); a wait that passes it raises
:class:`~xpnet.distributed.world.DistributedTimeoutError` naming the missing ranks.

Determinism: a sum is ``MPI_Allreduce``/``MPI_Iallreduce``, whose algorithm MPICH and Open
MPI choose from the message size and the number of ranks only, so the same job gives the
same bits run after run, and every rank receives the same bits (each element is either
summed once and copied, or summed pairwise with commutative float additions).
"""
import time

import numpy as np

from ..backend import cpu, to_device, to_host

__all__ = ['Communicator', 'Pending', 'wait_all']

# How long a wait polls without sleeping: most collectives of a step finish within it.
SPIN_SECONDS = 2e-4

_OPS = ('allreduce', 'broadcast', 'allgather', 'barrier', 'allgatherv', 'creation')


class Pending:
    """A collective in flight: :meth:`test` polls it, :meth:`wait` finishes it (deadline)."""
    __slots__ = ('_comm', '_done', '_finish', '_seq', '_op', '_detail', '_complete')

    def __init__(self, comm, done, finish, seq, op, detail):
        self._comm, self._done, self._finish = comm, done, finish
        self._seq, self._op, self._detail = seq, op, detail
        self._complete = False

    def test(self):
        """True once the collective completed (drives MPI's progress; never blocks)."""
        if not self._complete and self._done():
            self._complete = True
        return self._complete

    def wait(self):
        """Wait for completion (raising at the deadline) and copy staged results back."""
        if not self._complete:
            self._comm._wait(self._done, self._seq, self._op, self._detail)
            self._complete = True
        if self._finish is not None:
            finish, self._finish = self._finish, None
            finish()


def _done():
    return True


def wait_all(pendings):
    """Wait for several collectives at once: one polling loop and one deadline (named after
    the first unfinished one), then each one's results are copied back in order."""
    todo = [p for p in pendings if not p.test()]
    if todo:
        first = todo[0]
        first._comm._wait(lambda: all(p.test() for p in todo), first._seq, first._op,
                          first._detail)
    for p in pendings:
        p.wait()


class Communicator:
    """Collectives among every rank, on a private duplicate of ``MPI.COMM_WORLD``.

    Create one per independent user, at the same point of the program on every rank
    (creation is itself collective). In a world of one rank every operation is a no-op.

    Args:
        world: the initialized world (:func:`xpnet.distributed.world.get_world`).
        name: shown in timeout messages (``'trainer'``, ``'sync_batchnorm'``...).
    """

    def __init__(self, world, name):
        self.world, self.name = world, name
        self.rank, self.size = world.rank, world.size
        self.mpi = world.mpi
        self.id = len(world.communicators)
        world.communicators.append(self)
        self._seq = 0
        self._device = {}          # Context -> device backend, made at first use
        self.comm = None
        if world.mpi is not None:
            # MPI_Comm_idup, so a rank that never gets here is reported at the deadline
            comm, req = world.mpi.COMM_WORLD.Idup()
            self._wait(req.Test, 0, 5, '')
            self.comm = comm

    def __repr__(self):
        return f'Communicator({self.name!r}, rank {self.rank} of {self.size})'

    # ---- the public operations ---------------------------------------------------------
    def iallreduce(self, arr, ctx, out=None):
        """Start summing ``arr`` (on ``ctx``) over all ranks into ``out`` (default: ``arr``
        itself, in place; else an array of the same shape and dtype); returns a Pending."""
        seq = self._next()
        out = arr if out is None else out
        if self.size == 1:
            if out is not arr:
                with ctx.use():
                    out[...] = arr
            return Pending(self, _done, None, seq, 0, '')
        if ctx.xp is not np:
            return self.device_backend(ctx).iallreduce(arr, out, seq)
        return self._host_iallreduce(arr, out, seq)

    def allreduce(self, arr, ctx):
        """Sum ``arr`` over all ranks, in place (blocking); returns ``arr``."""
        self.iallreduce(arr, ctx).wait()
        return arr

    def broadcast(self, arr, ctx, root=0):
        """Overwrite ``arr`` with ``root``'s (blocking); returns ``arr``."""
        seq = self._next()
        if self.size == 1:
            return arr
        if ctx.xp is not np:
            self.device_backend(ctx).broadcast(arr, root, seq)
            return arr
        buf = arr if arr.flags.c_contiguous else np.ascontiguousarray(arr)
        req = self.comm.Ibcast(buf, root=root)
        self._wait(req.Test, seq, 1, f'{buf.size} {buf.dtype} from rank {root}')
        if buf is not arr:
            arr[...] = buf
        return arr

    def allgather(self, arr, ctx):
        """Every rank's ``arr`` (same shape everywhere), stacked: shape ``(size, *shape)``."""
        seq = self._next()
        xp = ctx.xp
        if self.size == 1:
            return xp.expand_dims(arr, 0).copy()
        if xp is not np:
            return self.device_backend(ctx).allgather(arr, seq)
        buf = np.ascontiguousarray(arr)
        out = np.empty((self.size,) + buf.shape, buf.dtype)
        req = self.comm.Iallgather(buf, out)
        self._wait(req.Test, seq, 2, f'{buf.size} {buf.dtype} per rank')
        return out

    def allgatherv(self, arr):
        """Every rank's host array concatenated along axis 0 (lengths may differ)."""
        counts = self.allgather(np.array([arr.shape[0]], np.int64), _CPU).reshape(-1)
        seq = self._next()
        if self.size == 1:
            return arr.copy()
        buf = np.ascontiguousarray(arr)
        row = int(np.prod(buf.shape[1:], dtype=np.int64))
        out = np.empty((int(counts.sum()),) + buf.shape[1:], buf.dtype)
        sizes = [int(c) * row for c in counts]
        req = self.comm.Iallgatherv(buf, [out, sizes])
        self._wait(req.Test, seq, 4, f'{buf.size} {buf.dtype} from this rank')
        return out

    def barrier(self):
        """Wait until every rank arrived."""
        seq = self._next()
        if self.size == 1:
            return
        req = self.comm.Ibarrier()
        self._wait(req.Test, seq, 3, '')

    def device_backend(self, ctx):
        """The backend moving ``ctx``'s arrays (made at first use, collectively)."""
        backend = self._device.get(ctx)
        if backend is None:
            from .device import make_backend
            backend = self._device[ctx] = make_backend(self, ctx)
        return backend

    # ---- internals ------------------------------------------------------------------------
    def _next(self):
        self._seq += 1
        return self._seq

    def _host_iallreduce(self, arr, out, seq):
        # MPI has no standard half type: sum float16 in float32, as NCCL does internally.
        wide = np.float32 if arr.dtype == np.float16 else None
        send = np.ascontiguousarray(arr, dtype=wide)
        direct = out.flags.c_contiguous and wide is None
        if direct:
            recv = out
        else:
            recv = send if out is arr else np.empty(send.shape, send.dtype)
        if recv is send:
            req = self.comm.Iallreduce(self.mpi.IN_PLACE, recv, op=self.mpi.SUM)
        else:
            req = self.comm.Iallreduce(send, recv, op=self.mpi.SUM)

        def finish():
            out[...] = recv
        return Pending(self, req.Test, None if direct else finish, seq, 0,
                       f'{send.size} {arr.dtype}')

    def host_staged(self, arr, out, ctx, seq):
        """Start summing a device array through host copies (the fallback device path)."""
        send = np.ascontiguousarray(to_host(arr))
        recv = send if out is arr else np.empty_like(send)
        pending = self._host_iallreduce(send, recv, seq)
        inner = pending._finish

        def finish():
            if inner is not None:
                inner()
            with ctx.use():
                out[...] = to_device(recv, ctx)
        pending._finish = finish
        return pending

    def _wait(self, done, seq, op, detail):
        """Poll ``done()`` until true, answering arrival probes; raise at the deadline."""
        if done():
            return
        world = self.world
        timeout = world.timeout
        start = time.monotonic()
        deadline = start + timeout if timeout > 0 else None
        prev, world.waiting = world.waiting, (self.id, seq, op)
        delay = 0.0
        try:
            while not done():
                world.answer_probes()
                now = time.monotonic()
                if deadline is not None and now > deadline:
                    raise self._timeout_error(seq, op, detail, timeout)
                # Spin for the first SPIN_SECONDS (a sleep lasts at least ~60 us: Linux's
                # timer slack), then sleep, backing off to 1% of the time waited so far
                # (at most 10 ms): a rank waiting for a slow one leaves its core to others.
                if now - start > SPIN_SECONDS:
                    time.sleep(delay)
                    delay = min(delay * 2 or 1e-5, max(2e-4, (now - start) / 100), 0.01)
        finally:
            world.waiting = prev

    def _timeout_error(self, seq, op, detail, timeout):
        from .world import DistributedTimeoutError
        world = self.world
        answers = world.locate_others(grace=min(max(1.0, 0.2 * timeout), 10.0))
        arrived, missing, elsewhere = [], [], []
        for r in range(self.size):
            if r == self.rank:
                continue
            where = answers.get(r)
            if where is None:
                missing.append(r)
            elif where[0] == self.id and where[1] >= seq:
                arrived.append(r)
            else:
                elsewhere.append((r, where))
        what = f'the creation of communicator {self.name!r}' if op == 5 else \
            f'{_OPS[op]} #{seq} on communicator {self.name!r}'
        what += f' ({detail})' if detail else ''
        msg = f'rank {self.rank} waited {timeout:g} s in {what}'
        if missing:
            msg += (f'; rank(s) {missing} did not arrive (they did not answer: busy outside '
                    'any collective, hung, or dead)')
        for r, (cid, s, o) in elsewhere:
            name = world.communicators[cid].name if 0 <= cid < len(world.communicators) \
                else '?'
            msg += f'; rank {r} is waiting in {_OPS[o]} #{s} on communicator {name!r} instead'
        if arrived:
            msg += f'; rank(s) {arrived} arrived'
        msg += ('. Every rank must make the same collective calls in the same order '
                '(raise the limit with dist.init(timeout=...) or XPNET_DIST_TIMEOUT)')
        return DistributedTimeoutError(msg)


_CPU = cpu(0)
