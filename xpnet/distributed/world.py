"""The process group: who this process is among the ranks of an MPI job, and how it fails.

``init()`` looks at the environment an MPI launcher gives its processes (MPICH/Hydra's
``PMI_RANK``/``PMI_SIZE``, Open MPI's ``OMPI_COMM_WORLD_SIZE``, PMIx, MVAPICH). Outside a
launcher it builds a world of one rank without importing mpi4py, so a single process works
exactly as without this module (and ``import xpnet`` never starts MPI). Under a launcher it
imports mpi4py (the ``mpi`` extra) and takes ``MPI.COMM_WORLD``.

Failure behaviour (with more than one rank):

- An exception that ends one rank's program would leave the others waiting in their next
  collective forever. ``init`` installs a ``sys.excepthook`` that prints the traceback
  (through the hook that was in place, prefixed with the rank) and then calls
  ``MPI.COMM_WORLD.Abort(1)``, which ends every rank of the job. Pass
  ``abort_on_error=False`` to keep the previous hook, or set ``sys.excepthook`` yourself
  after ``init``.
- Several ranks on one machine share its CPUs. Unless ``XPNET_HOST_THREADS`` is set, each
  rank's xpnet thread pool gets its share (CPUs / ranks on the machine). When none of
  ``OPENBLAS_NUM_THREADS``, ``OMP_NUM_THREADS``, ``MKL_NUM_THREADS`` is set, xpnet's own
  threaded products run on that share of BLAS threads too
  (``backend.blas.set_threaded_limit``; the count is lowered only while they run): with
  every rank's BLAS on every CPU, the ranks' busy-waiting threads took turns on the same
  cores (the digits example with 2 ranks on 2 CPUs: 19.5 s instead of 0.9 s). NumPy calls
  of your own keep the count you configured.
- Every collective waits at most ``timeout`` seconds (``init(timeout=...)``, the environment
  variable ``XPNET_DIST_TIMEOUT``, default 600; 0 waits forever). When the deadline passes,
  the waiting rank asks every other rank where it is (point-to-point messages on a private
  communicator, answered by ranks that are themselves waiting in a collective) and raises
  :class:`DistributedTimeoutError` naming the ranks that did not arrive.
"""
import os
import sys
import threading
import time

import numpy as np

__all__ = ['init', 'is_initialized', 'rank', 'size', 'local_rank', 'local_size',
           'DistributedTimeoutError', 'launched_under_mpi']

# Variables an MPI launcher sets in each process it starts (MPICH/Hydra and Intel MPI,
# Open MPI, PMIx-based launchers, MVAPICH). SLURM_* alone is not enough: a batch script
# outside srun has them too.
_LAUNCH_VARS = ('PMI_RANK', 'PMI_SIZE', 'OMPI_COMM_WORLD_SIZE', 'PMIX_RANK',
                'MV2_COMM_WORLD_SIZE', 'MPI_LOCALRANKID')

_INSTALL_HINT = ('install the MPI extra: pip install "xpnet[mpi]" (mpi4py and an MPICH whose '
                 'mpiexec needs no system packages)')

_DEFAULT_TIMEOUT = 600.0
_ABORT_DELAY = 0.5
_TAG_PROBE, _TAG_REPLY = 7301, 7302


class DistributedTimeoutError(RuntimeError):
    """A collective waited past the timeout; the message names the ranks that did not arrive."""


def launched_under_mpi():
    """True when an MPI launcher started this process (or mpi4py is already in use)."""
    return any(v in os.environ for v in _LAUNCH_VARS) or 'mpi4py.MPI' in sys.modules


def _env_timeout():
    raw = os.environ.get('XPNET_DIST_TIMEOUT')
    if raw is None or raw == '':
        return _DEFAULT_TIMEOUT
    try:
        return float(raw)
    except ValueError:
        raise ValueError(f'XPNET_DIST_TIMEOUT must be a number of seconds, got {raw!r}') from None


class _World:
    """This process's place in the job; the one instance lives in ``_world``."""

    def __init__(self, mpi, timeout):
        self.mpi = mpi                       # the mpi4py.MPI module, or None (one process)
        self.timeout = timeout
        self.communicators = []              # Communicator objects, in creation order
        self.waiting = None                  # (comm_id, seq, op) while this rank waits
        self._probe_lock = threading.Lock()  # one thread at a time answers probes
        if mpi is None:
            self.rank, self.size, self.local_rank, self.local_size = 0, 1, 0, 1
            self.ctl = None
            return
        world = mpi.COMM_WORLD
        self.rank, self.size = world.Get_rank(), world.Get_size()
        local = world.Split_type(mpi.COMM_TYPE_SHARED, key=self.rank)
        self.local_rank, self.local_size = local.Get_rank(), local.Get_size()
        local.Free()
        self.ctl = world.Dup()               # arrival probes only: never mixed with data

    # ---- where is everybody ---------------------------------------------------------------
    def answer_probes(self):
        """Tell ranks that asked where this rank is (called while it waits in a collective)."""
        mpi, ctl = self.mpi, self.ctl
        if ctl is None or not self._probe_lock.acquire(blocking=False):
            return
        try:
            status = mpi.Status()
            while ctl.Iprobe(source=mpi.ANY_SOURCE, tag=_TAG_PROBE, status=status):
                nonce = np.empty(1, np.int64)
                ctl.Recv([nonce, mpi.INT64_T], source=status.Get_source(), tag=_TAG_PROBE)
                where = self.waiting or (-1, -1, -1)
                reply = np.array([nonce[0], *where], np.int64)
                ctl.Send([reply, mpi.INT64_T], dest=status.Get_source(), tag=_TAG_REPLY)
        finally:
            self._probe_lock.release()

    def locate_others(self, grace):
        """Ask every other rank where it waits; ``{rank: (comm_id, seq, op)}`` for those that
        answered within ``grace`` seconds (a rank busy outside a collective cannot answer)."""
        mpi, ctl = self.mpi, self.ctl
        nonce = np.array([time.monotonic_ns() ^ (self.rank << 48)], np.int64)
        others = [r for r in range(self.size) if r != self.rank]
        sends = [ctl.Isend([nonce, mpi.INT64_T], dest=r, tag=_TAG_PROBE) for r in others]
        bufs = {r: np.empty(4, np.int64) for r in others}
        recvs = {r: ctl.Irecv([bufs[r], mpi.INT64_T], source=r, tag=_TAG_REPLY) for r in others}
        answers, deadline = {}, time.monotonic() + grace
        while len(answers) < len(others) and time.monotonic() < deadline:
            self.answer_probes()
            for r, req in recvs.items():
                if r not in answers and req.Test():
                    if bufs[r][0] == nonce[0]:
                        answers[r] = tuple(int(v) for v in bufs[r][1:])
                    else:                      # an answer to an older probe: ask again
                        recvs[r] = ctl.Irecv([bufs[r], mpi.INT64_T], source=r, tag=_TAG_REPLY)
            time.sleep(0.005)
        for r, req in recvs.items():
            if r not in answers:
                req.Cancel()
        del sends      # never waited for: the job is about to end
        return answers


_world = None
_init_lock = threading.Lock()


def init(timeout=None, abort_on_error=True):
    """Join the MPI job this process was launched in (idempotent).

    Outside an MPI launcher this makes a world of one rank (nothing is imported, nothing
    changes). Under ``mpiexec`` it needs mpi4py (``pip install "xpnet[mpi]"``). The query
    functions (:func:`rank`, :func:`size`, ...) and every collective call ``init()`` for you.

    Args:
        timeout: seconds a collective waits for the other ranks before raising
            :class:`DistributedTimeoutError` (default: ``XPNET_DIST_TIMEOUT`` or 600;
            0 or None-in-the-environment means wait forever). Calling ``init`` again with a
            timeout changes it.
        abort_on_error: with more than one rank, install a ``sys.excepthook`` that prints
            the uncaught exception and aborts the whole job (``MPI_Abort``), so the other
            ranks do not hang (see the module docstring).

    Returns:
        The number of ranks.

    Example::

        import xpnet.distributed as dist
        dist.init()
        print(f'rank {dist.rank()} of {dist.size()}')
    """
    global _world
    if timeout is not None:
        timeout = float(timeout)
        if timeout < 0:
            raise ValueError(f'dist.init: timeout must be >= 0 seconds, got {timeout}')
    with _init_lock:
        if _world is None:
            mpi = _import_mpi() if launched_under_mpi() else None
            _world = _World(mpi, _env_timeout() if timeout is None else timeout)
            if abort_on_error and _world.size > 1:
                _install_abort_hook(_world)
            if _world.local_size > 1:
                _share_cpus(_world)
        elif timeout is not None:
            _world.timeout = timeout
    return _world.size


def _import_mpi():
    try:
        from mpi4py import MPI
    except ImportError as err:
        found = ', '.join(f'{v}={os.environ[v]}' for v in _LAUNCH_VARS if v in os.environ)
        raise ImportError(f'xpnet.distributed: this process was started by an MPI launcher '
                          f'({found}) but mpi4py cannot be imported ({err}); '
                          f'{_INSTALL_HINT}') from err
    return MPI


def _install_abort_hook(world):
    previous = sys.excepthook

    def abort_job(exc_type, exc, tb):
        try:
            # the error first, in one line: the launcher may cut the rest when it kills us
            sys.stderr.write(f'xpnet.distributed: rank {world.rank} of {world.size} raised '
                             f'{exc_type.__name__}: {exc}\n(aborting every rank of the job)\n')
            sys.stderr.flush()
            previous(exc_type, exc, tb)
            sys.stderr.flush()
            sys.stdout.flush()
            time.sleep(_ABORT_DELAY)     # let the launcher forward this (and other ranks' errors)
        finally:
            world.mpi.COMM_WORLD.Abort(1)
    abort_job.previous = previous
    sys.excepthook = abort_job


def _share_cpus(world):
    """Give xpnet's thread pool, and its threaded BLAS products, this rank's share of the
    machine's CPUs (unless ``XPNET_HOST_THREADS``, resp. a BLAS thread count such as
    ``OPENBLAS_NUM_THREADS``, was configured: then those settings stand)."""
    from ..backend import blas, hostpool
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    share = max(1, cpus // world.local_size)
    if not os.environ.get('XPNET_HOST_THREADS'):
        hostpool.set_host_threads(min(share, hostpool.host_threads()))
    blas_vars = ('OPENBLAS_NUM_THREADS', 'OMP_NUM_THREADS', 'MKL_NUM_THREADS')
    if cpus > share and not any(os.environ.get(v) for v in blas_vars):
        # (only xpnet's own products: the count is restored after each, see backend.blas)
        blas.set_threaded_limit(share)


def get_world():
    """The initialized world (initializing it if needed)."""
    if _world is None:
        init()
    return _world


def is_initialized():
    """True once :func:`init` has run (explicitly or through another call)."""
    return _world is not None


def rank():
    """This process's rank in the job, 0 to ``size() - 1`` (0 outside MPI)."""
    return get_world().rank


def size():
    """The number of ranks in the job (1 outside MPI)."""
    return get_world().size


def local_rank():
    """This process's rank among the ranks on its machine (its default GPU's id)."""
    return get_world().local_rank


def local_size():
    """The number of ranks on this process's machine."""
    return get_world().local_size
