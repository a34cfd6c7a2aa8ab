"""xpnet's threads on the host: intra-op parallelism and background jobs for NumPy ops.

NumPy runs every elementwise op, copy and reduction on one core; only its BLAS is threaded,
and a CNN training step would leave the other cores idle much of the time. This module is
the threading policy of xpnet's host ops:

- :func:`run_parts` runs a block of work that splits along one axis (the batch) in parts
  on a small pool of persistent threads, the caller doing its own share, with the BLAS on
  one thread meanwhile (:class:`~xpnet.backend.blas.single_thread_blas`): each part's
  products are single-threaded and its copies and elementwise passes run beside the other
  parts'. NumPy releases the GIL inside both. Used by the Winograd convolution, the
  channels-first unfolding, max pooling and BatchNorm.
- :func:`matmul` is the product of those ops: split in row, column or reduction blocks
  when large, whole on one thread when small.
- :func:`threaded_matmul` is the product of Dense layers and ``dot``: on the BLAS's own
  threads (:class:`~xpnet.backend.blas.threaded_blas`), the fastest for a lone product.
- :func:`defer` runs work off the critical path -- a convolution's weight and bias
  gradients -- on a background thread while the caller goes on; the autograd engine waits
  for such gradients (pending gradients, see ``xpnet.autograd``) only when it writes them
  to the parameters.

**Deterministic splits.** How work is split never depends on timing: the parts of
:func:`run_parts` are ``split_points(n, parts)`` with ``parts`` given by the caller or the
configured thread count, and when the pool cannot take them (a pool of one thread, a call
from inside a part, another thread using the pool, a background job occupying a thread)
the *same* parts run one after another in the caller. Split reductions (BatchNorm's partial sums, the partial products of
a long reduction in :func:`matmul`) use a number of parts that depends on the shape only
(:func:`fixed_parts`) and are added in part order, so they give the same numbers on every
thread count too; background jobs give the same numbers as the same work run inline.
See ``docs/performance.md`` for what is identical across thread counts.

Handing work to a thread and back costs tens of microseconds in CPython, and each NumPy
call of a part may wait for the GIL while another part holds it, so parts are coarse (one
per thread, a few large NumPy calls each) and write into buffers the caller allocated.
xpnet's threads are its own: they sleep between splits (an idle pool costs no CPU), and
nothing here changes the CPU affinity, scheduler or interpreter settings of any thread
(``xpnet.backend.tune_host`` is the explicit opt-in for such tunings).

The pool size is ``XPNET_HOST_THREADS`` (default: the CPUs this process may use, at most
8) or :func:`set_host_threads`; 1 turns splitting and background jobs off. A forked child
starts its pool afresh.

Example::

    def part(lo, hi):
        np.multiply(a[lo:hi], b[lo:hi], out=c[lo:hi])
    run_parts(part, len(a))
"""
import os
import threading

import numpy as np

from .blas import (blas_controllable, in_threaded_blas, settle as settle_blas,
                   single_thread_blas, threaded_blas)
from .memory import scratch

__all__ = ['host_threads', 'set_host_threads', 'run_parts', 'map_parts', 'worth_splitting',
           'split_points', 'fixed_parts', 'matmul', 'threaded_matmul',
           'can_split_blas', 'defer', 'Deferred', 'resolve', 'is_deferred', 'jobs_running']

_MAX_THREADS = 8


def _default_threads():
    env = os.environ.get('XPNET_HOST_THREADS')
    if env:
        try:
            n = int(env)
        except ValueError:
            n = 0
        if n < 1:
            raise ValueError(f'XPNET_HOST_THREADS must be a positive integer, got {env!r}')
        return n
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    return max(1, min(n, _MAX_THREADS))


class _Signal:
    """A binary semaphore: :meth:`post` makes one :meth:`wait` return (a Python lock may
    be released by any thread)."""
    __slots__ = ('_lock',)

    def __init__(self):
        self._lock = threading.Lock()
        self._lock.acquire()

    def post(self):
        self._lock.release()

    def wait(self):
        self._lock.acquire()


class _Worker:
    """A daemon thread running one task at a time: it sleeps until :meth:`start` hands it
    a list of parts, and the caller waits for the end in :meth:`join`."""

    def __init__(self, index):
        self._go, self._done = _Signal(), _Signal()
        self._task = None
        self._error = None
        self._thread = threading.Thread(target=self._loop, name=f'xpnet-host-{index}',
                                        daemon=True)
        self._thread.start()

    def _loop(self):
        _local.inside = True
        while True:
            self._go.wait()
            fn, bounds = self._task
            try:
                with single_thread_blas():     # (held by the caller too: no change)
                    _run_serially(fn, bounds)
            except BaseException as err:          # re-raised in the caller
                self._error = err
            finally:
                self._task = None
                self._done.post()

    def start(self, fn, bounds):
        self._error = None
        self._task = (fn, bounds)
        self._go.post()

    def join(self):
        self._done.wait()
        err, self._error = self._error, None
        return err


_local = threading.local()
_pool_lock = threading.Lock()
_workers = []
_threads = None


def _after_fork_in_child():
    """A forked child has none of the parent's threads: start the pool afresh."""
    global _pool_lock, _workers, _jobs, _jobs_cond, _jobs_active, _job_thread
    _pool_lock = threading.Lock()
    _workers = []
    _jobs = []
    _jobs_cond = threading.Condition(threading.Lock())
    _jobs_active = 0
    _job_thread = None


def host_threads():
    """Threads :func:`run_parts` splits work over (1: no splitting)."""
    global _threads
    if _threads is None:
        _threads = _default_threads()
    return _threads


def set_host_threads(n):
    """Set the number of threads :func:`run_parts` splits work over (``None``: the
    default, see ``XPNET_HOST_THREADS``); returns the previous setting. 1 turns splitting
    and background jobs off."""
    global _threads
    previous = host_threads()
    if n is not None and (int(n) != n or n < 1):
        raise ValueError(f'set_host_threads: expected a positive integer or None, got {n!r}')
    _threads = None if n is None else int(n)
    return previous


def split_points(n, parts):
    """``parts + 1`` boundaries splitting ``range(n)`` into near-equal contiguous parts."""
    return [n * i // parts for i in range(parts + 1)]


# Split reductions use at most this many parts (see fixed_parts).
MAX_FIXED_PARTS = 8


def fixed_parts(work, unit, n):
    """Parts for a split reduction, a function of its size only: ``work // unit`` (at
    least 1), at most ``n`` and :data:`MAX_FIXED_PARTS`. The partial results of these parts,
    added in part order, are the same whatever the number of threads that computes them."""
    return max(1, min(MAX_FIXED_PARTS, n, work // max(unit, 1)))


def _run_serially(fn, bounds):
    """``fn`` over the parts ``bounds[i]:bounds[i + 1]`` in order; the first error (in part
    order) is raised after every part ran."""
    error = None
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        try:
            fn(lo, hi)
        except BaseException as err:
            if error is None:
                error = err
    if error is not None:
        raise error


def run_parts(fn, n, parts=None):
    """Run ``fn(lo, hi)`` for each part of ``split_points(n, parts)``, in parallel on the
    host pool when it is free.

    ``parts`` defaults to :func:`host_threads` (and is at most ``n``). The parts are the
    same however they run: the pool's threads take contiguous groups of them, and when the
    pool cannot help (one thread, nested or concurrent calls, a running background job
    leaving no thread) the caller runs them all in order.
    ``fn`` must touch only its own part of any output and should write into buffers
    allocated by the caller. Inside, the BLAS runs on one thread. The first exception (in
    part order) is re-raised here after all parts finished.
    """
    count = max(1, min(n, host_threads() if parts is None else int(parts)))
    bounds = split_points(n, count)
    # threads that may help: one per part, one fewer while a background job runs
    helpers = min(count, host_threads() - (1 if _jobs_active else 0)) - 1
    with single_thread_blas():
        if helpers < 1 or getattr(_local, 'inside', False) or in_threaded_blas() or \
                not _pool_lock.acquire(blocking=False):
            _run_serially(fn, bounds)
            return
        try:
            _run_on_pool(fn, bounds, helpers + 1)
        finally:
            _pool_lock.release()


def _run_on_pool(fn, bounds, threads):
    """The parts in ``bounds`` in ``threads`` contiguous groups, the first in the caller."""
    count = len(bounds) - 1
    groups = split_points(count, threads)
    while len(_workers) < threads - 1:
        _workers.append(_Worker(len(_workers)))
    for i in range(1, threads):
        _workers[i - 1].start(fn, bounds[groups[i]:groups[i + 1] + 1])
    _local.inside = True
    error = None
    try:
        _run_serially(fn, bounds[:groups[1] + 1])
    except BaseException as err:
        error = err
    finally:
        _local.inside = False
        for i in range(1, threads):
            err = _workers[i - 1].join()
            if error is None:
                error = err
    if error is not None:
        raise error


def map_parts(fn, n, parts=None):
    """Like :func:`run_parts`, returning the parts' results ``[fn(lo, hi), ...]`` in part
    order."""
    count = max(1, min(n, host_threads() if parts is None else int(parts)))
    bounds = split_points(n, count)
    results = [None] * count
    index = {lo: i for i, lo in enumerate(bounds[:-1])}

    def call(lo, hi):
        results[index[lo]] = fn(lo, hi)
    run_parts(call, n, count)
    return results


# ---- background jobs ------------------------------------------------------------------------

class Deferred:
    """A value being computed by a background job (see :func:`defer`): a pending gradient
    for the autograd engine.

    :meth:`result` waits for it -- or, when the job has not started yet, runs it in the
    calling thread (so a caller that would only wait helps instead)."""
    __slots__ = ('_fn', '_done', '_value', '_error', '_state')

    def __init__(self, fn):
        self._fn = fn
        self._done = threading.Lock()
        self._done.acquire()
        self._value = self._error = None
        self._state = 'queued'                    # -> 'running' -> 'done'

    def _run(self, release=True):
        try:
            with single_thread_blas():
                self._value = self._fn()
        except BaseException as err:              # re-raised by result()
            self._error = err
        finally:
            self._fn = None
            self._state = 'done'
            if release:
                self._done.release()

    def run_here(self):
        """Run the job in the calling thread now if it has not started (then
        :meth:`result` does not wait)."""
        if _claim(self):
            self._run()

    def result(self):
        """The job's value (its exception is raised here)."""
        self.run_here()
        with self._done:                          # released once the job is done
            pass
        settle_blas()             # (a restore the job's thread could not make: blas._restore)
        if self._error is not None:
            raise self._error
        return self._value

    def done(self):
        """True once the job finished (never blocks)."""
        return self._state == 'done'

    def part(self, i):
        """A Deferred of ``result()[i]`` (for a job computing several values)."""
        return _Item(self, i)


class _Item:
    __slots__ = ('_parent', '_index')

    def __init__(self, parent, index):
        self._parent, self._index = parent, index

    def result(self):
        value = self._parent.result()
        return None if value is None else value[self._index]

    def done(self):
        return self._parent.done()

    def run_here(self):
        self._parent.run_here()

    def part(self, i):
        return _Item(self, i)


_jobs = []                       # queued Deferreds, oldest first
_jobs_cond = threading.Condition(threading.Lock())
_jobs_active = 0                 # queued or running background jobs
_job_thread = None


def _claim(d):
    """Take a queued job out of the queue for the caller to run (False if started)."""
    global _jobs_active
    with _jobs_cond:
        if d._state != 'queued':
            return False
        _jobs.remove(d)
        _jobs_active -= 1
        d._state = 'running'
        return True


def _job_loop():
    global _jobs_active
    _local.inside = True
    while True:
        with _jobs_cond:
            while not _jobs:
                _jobs_cond.wait()
            d = _jobs.pop(0)
            d._state = 'running'
        try:
            d._run(release=False)
        finally:
            # counted out before anyone waiting sees the result
            with _jobs_cond:
                _jobs_active -= 1
            d._done.release()


def jobs_running():
    """Number of background jobs queued or running."""
    return _jobs_active


def defer(fn):
    """Start ``fn()`` on the host pool's background thread and return a :class:`Deferred`
    of its value; meanwhile the BLAS runs on one thread and :func:`run_parts` uses one
    thread fewer. Without a second thread (one CPU, or a BLAS whose threads cannot be
    switched off) or from inside a part, ``fn()`` runs now and its value is returned directly -- callers accept both, and the
    numbers are the same either way. For work off the critical path: the autograd engine
    resolves pending leaf gradients only when it writes them, at the end of the backward
    pass, so a layer's weight gradient is computed while the backward pass goes on through
    earlier layers.
    """
    global _job_thread, _jobs_active
    if not can_split_blas() or getattr(_local, 'inside', False) or in_threaded_blas():
        with single_thread_blas():
            return fn()
    d = Deferred(fn)
    with _jobs_cond:
        if _job_thread is None:
            _job_thread = threading.Thread(target=_job_loop, name='xpnet-host-jobs',
                                           daemon=True)
            _job_thread.start()
        _jobs.append(d)
        _jobs_active += 1
        _jobs_cond.notify()
    return d


def resolve(value):
    """``value.result()`` for a Deferred, else ``value`` itself."""
    return value.result() if isinstance(value, (Deferred, _Item)) else value


def is_deferred(value):
    return isinstance(value, (Deferred, _Item))


# Elementwise passes over fewer bytes than this stay in one part: handing half of a smaller
# pass to another thread costs about as much as it saves.
SPLIT_BYTES = 1 << 21


def worth_splitting(a):
    """Whether elementwise work over the host array ``a`` is large enough to split (a
    function of its size only)."""
    return type(a) is np.ndarray and a.nbytes >= SPLIT_BYTES


# ---- matrix products ------------------------------------------------------------------------

_F16 = np.dtype(np.float16)


def _half_matmul(product, a, b, out):
    """A float16 product (AMP on the CPU) as a GPU's tensor cores make it: exact float32
    products summed in float32, rounded to float16 once. NumPy's own float16 matmul has no
    BLAS (about 10x slower) and gives the same numbers up to the order of the sums."""
    y = product(a.astype(np.float32), b.astype(np.float32))
    if out is None:
        return y.astype(_F16)
    out[...] = y
    return out


def threaded_matmul(a, b, out=None):
    """``a @ b`` on the BLAS's own threads (see :class:`~xpnet.backend.blas.threaded_blas`)
    -- the fastest for a lone product of moderate size, such as a Dense layer's. (Its
    threads spin for ~0.1 s after it; splits do not wait for them: ``docs/performance.md``.)
    """
    if type(a) is not np.ndarray or type(b) is not np.ndarray:
        return a @ b if out is None else _xp_of(a).matmul(a, b, out=out)
    if a.dtype == _F16 and b.dtype == _F16:
        return _half_matmul(threaded_matmul, a, b, out)
    if out is None:
        out = _product_buffer(a, b)
    with threaded_blas():
        return a @ b if out is None else np.matmul(a, b, out=out)


# Below this many multiply-adds (M*N*K) a product runs whole on one thread: handing a part
# to another thread and back costs about as much as a 6 M multiply-add product on one core.
SPLIT_MNK = 6 << 20
# A long reduction is cut in slabs of at least this many rows (see matmul)
K_SLAB_MIN = 256


def can_split_blas():
    """Whether products can be split over the pool: more than one thread, and a BLAS whose
    own threading can be switched off meanwhile (otherwise the two would oversubscribe)."""
    return host_threads() > 1 and blas_controllable()


def matmul(a, b, out=None):
    """``a @ b`` (``np.matmul`` semantics) with xpnet's threading policy for host arrays,
    always with the BLAS on one thread: a large 2-D product is split into row (or column)
    blocks over the host pool, a long reduction into slabs whose partial products are added
    in order (their number depends on the shape only); anything smaller (or batched, or a
    vector product) runs whole. Device arrays go to their own ``matmul``."""
    if type(a) is not np.ndarray or type(b) is not np.ndarray:
        return a @ b if out is None else _xp_of(a).matmul(a, b, out=out)
    if a.dtype == _F16 and b.dtype == _F16:
        return _half_matmul(matmul, a, b, out)
    if out is None:
        out = _product_buffer(a, b)
    if a.ndim != 2 or b.ndim != 2 or a.shape[0] * a.shape[1] * b.shape[1] < SPLIT_MNK:
        with single_thread_blas():
            return np.matmul(a, b, out=out)
    (M, K), N = a.shape, b.shape[1]
    slabs = fixed_parts(M * N * K, SPLIT_MNK, K // K_SLAB_MIN)
    if K >= 8 * max(M, N) and slabs > 1:
        # a long reduction (a weight gradient: (O, rows) @ (rows, K*C)): each slab of the
        # reduction axis gives a partial product (splitting M or N would read the long
        # operand twice); the partials are added in slab order (the first one is
        # computed into ``out``)
        partial = map_parts(lambda lo, hi: np.matmul(a[:, lo:hi], b[lo:hi],
                                                     out=out if lo == 0 else None), K, slabs)
        for p in partial[1:]:
            out += p
        return out
    parts = None if can_split_blas() else 1
    if M >= N:
        run_parts(lambda lo, hi: np.matmul(a[lo:hi], b, out=out[lo:hi]), M, parts)
    else:
        run_parts(lambda lo, hi: np.matmul(a, b[:, lo:hi], out=out[:, lo:hi]), N, parts)
    return out


def _product_buffer(a, b):
    """A pooled output for the 2-D product ``a @ b`` (``backend.memory``: reused between
    steps instead of page-faulted in afresh), or None for other shapes."""
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[0]:
        return None                      # (np.matmul raises its own error)
    return scratch.empty(np, (a.shape[0], b.shape[1]), np.result_type(a.dtype, b.dtype))


def _xp_of(a):
    from . import get_array_module
    return get_array_module(a)


if hasattr(os, 'register_at_fork'):
    os.register_at_fork(after_in_child=_after_fork_in_child)
