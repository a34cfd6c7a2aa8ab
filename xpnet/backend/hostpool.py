"""xpnet's threads on the host: intra-op parallelism and background jobs for NumPy ops.

NumPy runs every elementwise op, copy and reduction on one core; only its BLAS is threaded.
In a CNN training step that leaves one of two cores idle about half the time -- worse than
idle: after each threaded GEMM, OpenBLAS's worker threads spin for ~0.1 s waiting for the
next one, so a thread of ours would fight them for the core (measured on 2 cores: a 2.4 ms
strided copy split over two threads takes 1.3 ms after a pause, but no less than 2.4 ms
right after a threaded GEMM; a Winograd layer split in two takes 2.0 ms alone and 3.8-5
ms right after one). This module is the threading policy of xpnet's host ops:

- :func:`run_parts` runs a block of work that splits along one axis (the batch) on a
  small pool of persistent threads, the caller doing its own share, with OpenBLAS on one
  thread meanwhile (:class:`~xpnet.backend.blas.single_thread_blas`): each part's GEMMs
  are single-threaded (two of them side by side match OpenBLAS's own two-thread GEMM,
  5.6 ms for CIFAR's im2col product) and its copies and elementwise passes run beside the
  other part's. NumPy releases the GIL inside both. Used by the Winograd convolution (a
  whole chain of transforms and products per part: CIFAR's 32->32 layer forward 6.3 ->
  5.7 ms, backward 8.5 -> 6.0 ms), the channels-first unfolding and max pooling.
- :func:`matmul` is the product of those ops: split in row, column or reduction blocks
  when large, on one thread when small -- it never wakes OpenBLAS's threads.
- :func:`threaded_matmul` is the product of Dense layers and ``dot``: on OpenBLAS's own
  threads, which are fastest for a lone product of moderate size; it notes that they are
  now spinning (:func:`blas_threads_awake`), and for that window :func:`run_parts` runs
  serially and :func:`matmul` stays threaded.
- :func:`defer` runs work off the critical path -- a convolution's weight and bias
  gradients -- on a background thread while the caller goes on; the autograd engine waits
  for such gradients only when it writes them to the parameters.

Handing work to a thread and back costs ~90 us in CPython on these machines, and each NumPy
call of a part may wait ~30 us for the GIL while another part holds it, so parts are
coarse (one per thread, a few large NumPy calls each) and write into buffers the caller
allocated. Most of those microseconds are the hypervisor waking an idle virtual CPU (~40
us per lock hand-over between two threads); the caller therefore waits for the other
parts by spinning in C with the GIL released (glibc's spinlock through ctypes;
``XPNET_SPIN_JOIN=0`` turns it off): same-process A/B on the CIFAR step, 32.3 -> 30.8 and
32.2 -> 31.4 ms median. The workers themselves sleep between splits, so an idle pool costs
no CPU.

Each pool thread keeps to one CPU of those the process may use (``XPNET_PIN_THREADS=0``
turns that off): a woken thread may otherwise land on its waker's CPU, and the parts then
share one core until the scheduler moves one (without pinning, some rounds of the CIFAR
benchmark ran at ~45 instead of ~31 ms; with it such rounds were rarer -- the machines'
noise makes this a weak measurement). The calling thread is kept off the pool's CPUs only
while it waits on them (:class:`caller_pinned`: inside :func:`run_parts`, and the main
thread during a backward pass, when background jobs run): after an idle spell it may
wake on a pool thread's CPU and share it until the scheduler moves it (same-process A/B
on the CIFAR benchmark, rounds of 10 steps after a 0.3 s pause: first step 52 -> 39 ms
median, round 39 -> 36 ms; in an earlier run 44 -> 36 and 42 -> 36 ms).

Nested calls, calls from several threads at once (device threads of a multi-device step)
and a pool of one thread run the parts one after another in the caller. The pool size is
``XPNET_HOST_THREADS`` (default: the CPUs this process may use, at most 8) or
:func:`set_host_threads`; 1 turns splitting and background jobs off. Results do not depend
on the split except for the rounding of split reductions.

Example::

    def part(lo, hi):
        np.multiply(a[lo:hi], b[lo:hi], out=c[lo:hi])
    run_parts(part, len(a))
"""
import os
import sys
import threading
import time

import numpy as np

from .blas import blas_controllable, single_thread_blas
from .memory import c_function

__all__ = ['host_threads', 'set_host_threads', 'run_parts', 'map_parts', 'worth_splitting',
           'split_points', 'matmul', 'threaded_matmul', 'blas_threads_awake', 'can_split_blas',
           'defer', 'Deferred', 'resolve', 'resolve_all', 'is_deferred', 'jobs_running',
           'caller_pinned']

_MAX_THREADS = 8


def _default_threads():
    env = os.environ.get('XPNET_HOST_THREADS')
    if env:
        try:
            return max(1, int(env))
        except ValueError:
            raise ValueError(f'XPNET_HOST_THREADS must be a positive integer, got '
                             f'{env!r}') from None
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    return max(1, min(n, _MAX_THREADS))


def _spin_functions():
    """glibc's ``pthread_spin_init``/``lock``/``unlock`` (see ``memory.c_function``), or
    None where they are not available."""
    import ctypes
    fns = [c_function(n) for n in ('pthread_spin_init', 'pthread_spin_lock',
                                   'pthread_spin_unlock')]
    if None in fns:
        return None
    init, lock, unlock = fns
    init.argtypes = [ctypes.c_void_p, ctypes.c_int]
    lock.argtypes = unlock.argtypes = [ctypes.c_void_p]
    init.restype = lock.restype = unlock.restype = ctypes.c_int
    return ctypes, init, lock, unlock


SPIN_JOIN = os.environ.get('XPNET_SPIN_JOIN', '1') != '0'
_SPIN = _spin_functions() if SPIN_JOIN else None


class _SpinSignal:
    """A binary semaphore on a glibc spinlock: :meth:`post` makes one :meth:`wait`
    return. ``wait`` spins in C with the GIL released, so the waiting thread's CPU never
    goes idle: waking an idle CPU goes through the hypervisor on these virtual machines
    (~40 us for a lock hand-over between two threads, against ~2 us spinning). For short
    waits only -- the caller joining a part it knows is running."""
    __slots__ = ('_word', '_addr')

    def __init__(self):
        ctypes, init, lock, _ = _SPIN
        self._word = ctypes.c_int(0)
        self._addr = ctypes.addressof(self._word)
        init(self._addr, 0)
        lock(self._addr)                   # taken: the first wait blocks until a post

    def post(self):
        _SPIN[3](self._addr)

    def wait(self):
        _SPIN[2](self._addr)


class _LockSignal:
    """:class:`_SpinSignal` on a lock (a sleeping wait), without glibc."""
    __slots__ = ('_lock',)

    def __init__(self):
        self._lock = threading.Lock()
        self._lock.acquire()

    def post(self):
        self._lock.release()

    def wait(self):
        self._lock.acquire()


class _Worker:
    """A daemon thread running one task at a time: it sleeps on a lock until
    :meth:`start` hands it one, and the caller waits for the end in :meth:`join`, by
    spinning when it can (see :class:`_SpinSignal`)."""

    def __init__(self, index):
        self._go = _LockSignal()
        self._done = _SpinSignal() if _SPIN is not None else _LockSignal()
        self._task = None
        self._error = None
        self._index = index
        self._cpus = _allowed_cpus()
        self._thread = threading.Thread(target=self._loop, name=f'xpnet-host-{index}',
                                        daemon=True)
        self._thread.start()

    def _loop(self):
        _local.inside = True
        _pin(self._index + 1, self._cpus)
        while True:
            self._go.wait()
            fn, lo, hi = self._task
            try:
                fn(lo, hi)
            except BaseException as err:          # re-raised in the caller
                self._error = err
            finally:
                self._task = None
                self._done.post()

    def start(self, fn, lo, hi):
        self._error = None
        self._task = (fn, lo, hi)
        self._go.post()

    def join(self):
        self._done.wait()
        err, self._error = self._error, None
        return err


# While xpnet's threads run, CPython's GIL switch interval is lowered from 5 ms to this: a
# thread coming back from a NumPy call waits at most this long for a thread that holds the
# GIL in Python code (measured with the interval lowered for the whole CIFAR benchmark
# step: 33.4 -> 32.4 ms median in one A/B run, 36.0 -> 33.8 in another; a small effect).
GIL_SWITCH_SECONDS = 0.0005
_region_lock = threading.Lock()
_region_users = 0
_region_saved = None


class _threads_running:
    """Context of work running on xpnet's threads: OpenBLAS on one thread and the GIL
    switch interval lowered (reference-counted, restored when the last one leaves)."""

    def __enter__(self):
        global _region_users, _region_saved
        self._blas = single_thread_blas()
        self._blas.__enter__()
        with _region_lock:
            if _region_users == 0:
                _region_saved = sys.getswitchinterval()
                sys.setswitchinterval(min(_region_saved, GIL_SWITCH_SECONDS))
            _region_users += 1
        return self

    def __exit__(self, *exc):
        global _region_users
        with _region_lock:
            _region_users -= 1
            if _region_users == 0 and _region_saved is not None:
                sys.setswitchinterval(_region_saved)
        self._blas.__exit__(*exc)
        return False


_local = threading.local()
_pool_lock = threading.Lock()
_workers = []
_threads = None


PIN_THREADS = os.environ.get('XPNET_PIN_THREADS', '1') != '0'


_pool_cpus = set()        # CPUs the pool's threads are pinned to


def _allowed_cpus():
    """The CPUs the calling thread may use, as they were before :class:`caller_pinned`
    narrowed them (a thread it starts meanwhile still gets its own CPU)."""
    saved = getattr(_local, 'pinned_from', None)
    if saved is not None:
        return saved
    try:
        return os.sched_getaffinity(0)
    except (AttributeError, OSError):
        return None


def _pin(i, cpus):
    """Keep the calling pool thread on one CPU (``i``-th of ``cpus``, those its creator
    may use): each wake-up would otherwise be free to land on the CPU of the thread that
    woke it."""
    if not PIN_THREADS or not cpus:
        return
    try:
        cpus = sorted(cpus)
        if len(cpus) > 1:
            cpu = cpus[i % len(cpus)]
            os.sched_setaffinity(0, {cpu})
            _pool_cpus.add(cpu)
    except (AttributeError, OSError):
        pass


class caller_pinned:
    """Keep the calling thread off the pool threads' CPUs while inside (reentrant; the
    thread's own CPU mask is restored on leaving). Around a split (:func:`run_parts`)
    and a backward pass (background jobs): otherwise, after an idle spell, the caller
    may wake on a pool thread's CPU and the two share one core while the other idles
    until the scheduler moves the caller (see the module docstring)."""
    __slots__ = ('_saved',)

    def __enter__(self):
        self._saved = None
        if not _pool_cpus or getattr(_local, 'pinned_from', None) is not None:
            return self
        try:
            mask = os.sched_getaffinity(0)
            free = mask - _pool_cpus
            if free and free != mask:
                os.sched_setaffinity(0, free)
                self._saved = mask
                _local.pinned_from = mask
        except (AttributeError, OSError):
            pass
        return self

    def __exit__(self, *exc):
        if self._saved is not None:
            _local.pinned_from = None
            try:
                os.sched_setaffinity(0, self._saved)
            except OSError:
                pass
        return False


def _after_fork_in_child():
    """A forked child has none of the parent's threads: start the pool afresh."""
    global _pool_lock, _workers, _jobs, _jobs_cond, _jobs_active, _job_thread, _local
    global _region_lock, _region_users
    if _region_users and _region_saved is not None:
        sys.setswitchinterval(_region_saved)
    _region_lock = threading.Lock()
    _region_users = 0
    _pool_lock = threading.Lock()
    _workers = []
    _local = threading.local()
    _jobs = []
    _jobs_cond = threading.Condition(threading.Lock())
    _jobs_active = 0
    _job_thread = None
    _pool_cpus.clear()


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


def run_parts(fn, n, parts=None):
    """Run ``fn(lo, hi)`` over a split of ``range(n)``, in parallel on the host pool.

    ``fn`` must touch only its own part of any output (the parts run concurrently) and
    should write into buffers allocated by the caller. Inside, OpenBLAS runs on one thread.
    The first exception raised by any part is re-raised here after all parts finished.
    Runs ``fn(0, n)`` directly when the pool has one thread, ``n < 2``, the pool is busy
    (nested calls, several calling threads) or OpenBLAS's threads are awake; a running
    background job takes one thread off the split. ``parts`` caps the number of parts.
    """
    parts = min(host_threads() - _jobs_active, n, host_threads() if parts is None else parts)
    if parts < 2 or getattr(_local, 'inside', False) or blas_threads_awake() or \
            not _pool_lock.acquire(blocking=False):
        fn(0, n)
        return
    try:
        while len(_workers) < parts - 1:
            _workers.append(_Worker(len(_workers)))
        bounds = split_points(n, parts)
        with _threads_running(), caller_pinned():
            for i in range(1, parts):
                _workers[i - 1].start(fn, bounds[i], bounds[i + 1])
            _local.inside = True
            error = None
            try:
                fn(bounds[0], bounds[1])
            except BaseException as err:
                error = err
            finally:
                _local.inside = False
                for i in range(1, parts):
                    err = _workers[i - 1].join()
                    if error is None:
                        error = err
        if error is not None:
            raise error
    finally:
        _pool_lock.release()


def map_parts(fn, n, parts=None):
    """Like :func:`run_parts`, returning the parts' results ``[fn(lo, hi), ...]`` in order
    (one element when the work was not split)."""
    results = {}

    def call(lo, hi):
        results[lo] = fn(lo, hi)
    run_parts(call, n, parts)
    return [results[k] for k in sorted(results)]


# ---- background jobs ------------------------------------------------------------------------

class Deferred:
    """A value being computed by a background job (see :func:`defer`).

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
            self._value = self._fn()
        except BaseException as err:              # re-raised by result()
            self._error = err
        finally:
            self._fn = None
            self._state = 'done'
            if release:
                self._done.release()

    def _run_here(self):
        """Run a claimed job in the calling thread (OpenBLAS kept asleep, as in jobs)."""
        with _threads_running():
            self._run()

    def result(self):
        """The job's value (its exception is raised here)."""
        if _claim(self):
            self._run_here()
        with self._done:                          # released once the job is done
            pass
        if self._error is not None:
            raise self._error
        return self._value

    def run_here(self):
        """Run the job in the calling thread now if it has not started (then
        :meth:`result` does not wait)."""
        if _claim(self):
            self._run_here()

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


def _job_loop(cpus):
    global _jobs_active
    _local.inside = True
    _pin(-1, cpus)
    while True:
        with _jobs_cond:
            while not _jobs:
                _jobs_cond.wait()
            d = _jobs.pop(0)
            d._state = 'running'
        try:
            with _threads_running():
                d._run(release=False)
        finally:
            # counted out and settings restored before anyone waiting sees the result
            with _jobs_cond:
                _jobs_active -= 1
            d._done.release()


def jobs_running():
    """Number of background jobs queued or running."""
    return _jobs_active


def defer(fn):
    """Start ``fn()`` on the host pool's background thread and return a :class:`Deferred`
    of its value; meanwhile OpenBLAS runs on one thread and :func:`run_parts` uses one
    thread fewer. Without a second thread (one CPU, or a BLAS whose threads cannot be
    switched off) ``fn()`` runs now and its value is returned directly -- callers accept
    both. For work off the critical path: the autograd engine resolves deferred leaf
    gradients only when it writes them, at the end of the backward pass, so a layer's
    weight gradient is computed while the backward pass goes on through earlier layers.
    """
    global _job_thread, _jobs_active
    if not can_split_blas() or getattr(_local, 'inside', False) or blas_threads_awake():
        return fn()
    d = Deferred(fn)
    with _jobs_cond:
        if _job_thread is None:
            _job_thread = threading.Thread(target=_job_loop, args=(_allowed_cpus(),),
                                           name='xpnet-host-jobs',
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


def resolve_all(values):
    """``[resolve(v) for v in values]``, but first running every job still queued in the
    calling thread (in parallel with the job already running) before waiting."""
    for v in values:
        while isinstance(v, _Item):
            v = v._parent
        if isinstance(v, Deferred) and _claim(v):
            v._run_here()
    return [resolve(v) for v in values]


# Elementwise passes over fewer bytes than this stay on one thread: a 1 MB pass takes
# ~0.06 ms, about what handing half of it to another thread costs.
SPLIT_BYTES = 1 << 21


def worth_splitting(a):
    """Whether elementwise work over the host array ``a`` is worth splitting over the pool."""
    return type(a) is np.ndarray and a.nbytes >= SPLIT_BYTES and host_threads() > 1


# ---- matrix products ------------------------------------------------------------------------

# After a threaded product OpenBLAS's worker threads spin for about this long (2**28 cycles)
# before they sleep. Splitting work over the pool meanwhile would put three busy threads on
# two cores (measured: a Winograd layer 2.0 ms alone, 3.8-5 ms right after a threaded
# GEMM), so run_parts runs serially and products stay threaded until the window has passed.
BLAS_SPIN_SECONDS = 0.1
_blas_awake_until = 0.0
# OpenBLAS runs a GEMM on one thread below this many multiply-adds (its SMP threshold)
_BLAS_THREADED_MNK = 65536 * 4


def blas_threads_awake():
    """Whether a threaded product issued through xpnet may still have OpenBLAS's worker
    threads spinning."""
    return time.monotonic() < _blas_awake_until


def _note_threaded(mnk):
    global _blas_awake_until
    if mnk > _BLAS_THREADED_MNK and blas_controllable() and host_threads() > 1 and \
            not _jobs_active:                     # (a job keeps BLAS on one thread)
        _blas_awake_until = time.monotonic() + BLAS_SPIN_SECONDS


def threaded_matmul(a, b, out=None):
    """``a @ b`` on BLAS's own threads -- the fastest for a lone product of moderate size
    (a Dense layer's: splitting a (128, 784) x (784, 512) product over the pool costs 1.1
    against 0.84 ms) -- noting that OpenBLAS's threads are now awake (see
    :func:`blas_threads_awake`)."""
    if type(a) is not np.ndarray or type(b) is not np.ndarray:
        return a @ b if out is None else _xp_of(a).matmul(a, b, out=out)
    y = a @ b if out is None else np.matmul(a, b, out=out)
    if y.ndim >= 2 and a.ndim >= 2:
        _note_threaded(y.size // max(1, y.shape[-1]) * a.shape[-1] * y.shape[-1])
    return y


# Below this many multiply-adds (M*N*K) a product runs whole on one thread: handing a part
# to another thread and back costs ~0.1 ms, about a 6 M multiply-add product on one core.
SPLIT_MNK = 6 << 20


def can_split_blas():
    """Whether products can be split over the pool: more than one thread, and a BLAS whose
    own threading can be switched off meanwhile (otherwise the two would oversubscribe)."""
    return host_threads() > 1 and blas_controllable()


def matmul(a, b, out=None):
    """``a @ b`` (``np.matmul`` semantics) with xpnet's threading policy for host arrays:
    OpenBLAS's own threads stay asleep; a large 2-D product is split into row (or column)
    blocks over the host pool, anything smaller (or batched, or a vector product) runs on
    one thread. Device arrays go to their own ``matmul``."""
    if type(a) is not np.ndarray or type(b) is not np.ndarray:
        return a @ b if out is None else _xp_of(a).matmul(a, b, out=out)
    if not can_split_blas():                  # no pool: BLAS threads as it likes
        return np.matmul(a, b, out=out)
    if blas_threads_awake() and not getattr(_local, 'inside', False):
        return threaded_matmul(a, b, out)      # its threads are spinning anyway
    if a.ndim != 2 or b.ndim != 2 or \
            a.shape[0] * a.shape[1] * b.shape[1] < SPLIT_MNK or getattr(_local, 'inside', False):
        with single_thread_blas():
            return np.matmul(a, b, out=out)
    (M, K), N = a.shape, b.shape[1]
    dtype = np.result_type(a.dtype, b.dtype)
    if K >= 8 * max(M, N):
        # a long reduction (a weight gradient: (O, rows) @ (rows, K*C)): each part
        # multiplies its slab of the reduction axis, then the partial products are added
        # (splitting M or N would read the long operand twice). The pool decides how many
        # parts actually run (maybe one), so the partials are whatever map_parts returns.
        partial = map_parts(lambda lo, hi: np.matmul(a[:, lo:hi], b[lo:hi]), K)
        total = partial[0]
        for p in partial[1:]:
            total += p
        if out is None:
            return total
        out[...] = total
        return out
    if out is None:
        out = np.empty((M, N), dtype=dtype)
    if M >= N:
        run_parts(lambda lo, hi: np.matmul(a[lo:hi], b, out=out[lo:hi]), M)
    else:
        run_parts(lambda lo, hi: np.matmul(a, b[:, lo:hi], out=out[:, lo:hi]), N)
    return out


def _xp_of(a):
    from . import get_array_module
    return get_array_module(a)


if hasattr(os, 'register_at_fork'):
    os.register_at_fork(after_in_child=_after_fork_in_child)
