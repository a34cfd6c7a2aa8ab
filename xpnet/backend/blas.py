"""Who uses the BLAS's threads when (the one place xpnet touches the BLAS thread count).

xpnet's host products come in two kinds:

- *single-thread* work: the parts of a split over xpnet's own threads
  (:mod:`~xpnet.backend.hostpool`), background jobs, chains of small dependent products (a
  recurrent loop). Inside :class:`single_thread_blas` the BLAS runs on one thread: each
  part's products are single-threaded, and splitting each small product costs more than it
  gains;
- *threaded* products: a lone product of moderate size (a Dense layer's), fastest on the
  BLAS's own threads. :class:`threaded_blas` runs them with the BLAS thread count the
  process configured (``OPENBLAS_NUM_THREADS``, threadpoolctl, ...), never changed by xpnet.

The thread count is one setting for the whole process, and a product's rounding depends on
it (the BLAS splits a threaded product into blocks by its thread count). So the two kinds
never overlap: while any thread is inside a single-thread region the count is 1, and a
threaded product of another thread waits until none is; single-thread regions wait for
running threaded products. Which kind a product is depends only on the code (never on
timing), so every product of xpnet is rounded the same way run after run. Inside a
single-thread region a "threaded" product runs on one thread (also decided by the code).

The count is read and set through threadpoolctl (its controller is created once: building
one costs ~0.3 ms). Without a BLAS that threadpoolctl can control, both contexts only keep
their mutual exclusion.

Example::

    with single_thread_blas(x.xp is numpy and small):
        for t in range(T): ...
    with threaded_blas():
        y = a @ b
"""
import os
import threading

__all__ = ['single_thread_blas', 'threaded_blas', 'blas_controllable', 'in_single_thread_blas',
           'in_threaded_blas', 'set_threaded_limit', 'threaded_limit']

_controllers = None      # the BLAS libraries' threadpoolctl controllers ([] if none)


def _blas_controllers():
    global _controllers
    if _controllers is None:
        try:        # (NumPy, and so its BLAS, is loaded by then: xpnet imports it first)
            from threadpoolctl import ThreadpoolController
            _controllers = list(ThreadpoolController().select(user_api='blas')
                                .lib_controllers)
        except Exception:        # no threadpoolctl, or a library it cannot query
            _controllers = []
    return _controllers


def blas_controllable():
    """True when the BLAS thread count can be switched (threadpoolctl found the library)."""
    return bool(_blas_controllers())


class _Use:
    """The process-wide state: threads inside single-thread regions and threaded products
    running, the saved thread counts, and a condition to wait on."""

    def __init__(self):
        self.cond = threading.Condition(threading.Lock())
        self.single = 0            # single-thread regions entered (all threads)
        self.threaded = 0          # threaded products running
        self.saved = None          # the counts before the first single-thread region
        self.limited = None        # the counts before the first limited threaded product
        self.pending = None        # counts a restore could not set yet (see _restore)


_use = _Use()
_local = threading.local()        # .single, .threaded: this thread's nesting depths
_limit = [None]                   # at most this many BLAS threads in threaded products


def set_threaded_limit(n):
    """Run xpnet's threaded products on at most ``n`` BLAS threads (None: the count the
    process configured); returns the previous limit. ``xpnet.distributed.init`` sets it to
    the rank's share of the machine's CPUs when several ranks share one and no BLAS thread
    count was configured: otherwise each rank's BLAS would start a thread per CPU and the
    ranks' busy-waiting threads would take turns on the same cores (a small MLP step 34 ms
    instead of 1.3 ms with 2 ranks on 2 CPUs). Only xpnet's own products are affected: the
    count is lowered while they run and restored after, as inside single-thread regions."""
    if n is not None and int(n) < 1:
        raise ValueError(f'the BLAS thread limit must be at least 1, got {n!r}')
    prev, _limit[0] = _limit[0], None if n is None else int(n)
    return prev


def threaded_limit():
    """The limit of :func:`set_threaded_limit` (None: none)."""
    return _limit[0]


def in_single_thread_blas():
    """Whether the calling thread is inside a single-thread region."""
    return getattr(_local, 'single', 0) > 0


def in_threaded_blas():
    """Whether the calling thread is inside a threaded section (work it hands to other
    threads there would wait for the section to end: run it in the caller instead)."""
    return getattr(_local, 'threaded', 0) > 0


def _restore(use, counts):
    """Set the BLAS libraries back to ``counts`` (under ``use.cond``). OpenBLAS ignores a
    raise of its thread count made by another thread than the one that lowered it
    (measured with 0.3.31: the main thread sets 1, a pool thread's set back to 2 leaves 1),
    so a restore that did not take is kept in ``use.pending`` and retried by the next thread
    passing through here -- never read back as the user's own count."""
    if not counts:
        use.pending = None
        return
    libs = _blas_controllers()
    for lib, n in zip(libs, counts):
        if lib.get_num_threads() != n:
            lib.set_num_threads(n)
    ok = all(lib.get_num_threads() == n for lib, n in zip(libs, counts))
    use.pending = None if ok else list(counts)


def _current_counts(use):
    """The counts to come back to: a pending restore, else what the libraries say now."""
    if use.pending is not None:
        _restore(use, use.pending)
        if use.pending is not None:
            return list(use.pending)
    return [lib.get_num_threads() for lib in _blas_controllers()]


def settle():
    """Retry a restore of the BLAS thread count that another thread could not make (see
    :func:`_restore`); called where xpnet's calling thread waits for its background work."""
    use = _use
    if use.pending is None:
        return
    with use.cond:
        if use.single == 0 and use.threaded == 0 and use.pending is not None:
            _restore(use, use.pending)


class single_thread_blas:
    """Context manager: the BLAS on one thread inside the block when ``active``
    (reentrant; shared by every thread inside one; waits for threaded products of other
    threads to finish first)."""
    __slots__ = ('_active',)

    def __init__(self, active=True):
        self._active = active

    def __enter__(self):
        if not self._active:
            return self
        depth = getattr(_local, 'single', 0)
        _local.single = depth + 1
        if depth or getattr(_local, 'threaded', 0):
            return self             # nested (or inside this thread's threaded product)
        use = _use
        with use.cond:
            while use.threaded:
                use.cond.wait()
            if use.single == 0:
                libs = _blas_controllers()
                use.saved = _current_counts(use)
                use.pending = None
                for lib, n in zip(libs, use.saved):
                    if lib.get_num_threads() != 1:
                        lib.set_num_threads(1)
            use.single += 1
        return self

    def __exit__(self, *exc):
        if not self._active:
            return False
        _local.single -= 1
        if _local.single or getattr(_local, 'threaded', 0):
            return False
        use = _use
        with use.cond:
            use.single -= 1
            if use.single == 0:
                _restore(use, use.saved)
                use.saved = None
                use.cond.notify_all()
        return False


class threaded_blas:
    """Context manager for a product on the BLAS's own threads, at the count the process
    configured: waits until no thread is inside a single-thread region (inside one, the
    block simply runs on one thread)."""
    __slots__ = ()

    def __enter__(self):
        depth = getattr(_local, 'threaded', 0)
        _local.threaded = depth + 1
        if depth or getattr(_local, 'single', 0):
            return self
        use = _use
        with use.cond:
            while use.single:
                use.cond.wait()
            if use.threaded == 0 and use.pending is not None:
                _restore(use, use.pending)          # (a threaded product needs the count)
            if use.threaded == 0 and _limit[0] is not None:
                libs = _blas_controllers()
                use.limited = _current_counts(use)
                use.pending = None
                for lib, n in zip(libs, use.limited):
                    if n > _limit[0]:
                        lib.set_num_threads(_limit[0])
            use.threaded += 1
        return self

    def __exit__(self, *exc):
        _local.threaded -= 1
        if _local.threaded or getattr(_local, 'single', 0):
            return False
        use = _use
        with use.cond:
            use.threaded -= 1
            if use.threaded == 0:
                if use.limited is not None:
                    _restore(use, use.limited)
                use.limited = None
                use.cond.notify_all()
        return False


def _after_fork_in_child():
    """A forked child has only the forking thread: the regions of the others are gone
    (and so are their hold on the lock); the forking thread's own region, if any, goes on."""
    global _use
    old, _use = _use, _Use()
    _use.pending = old.pending
    mine_single = getattr(_local, 'single', 0) and not getattr(_local, 'threaded', 0)
    if mine_single:
        _use.single, _use.saved = 1, old.saved
    elif old.single and old.saved:
        for lib, n in zip(_blas_controllers(), old.saved):
            if n != 1:
                lib.set_num_threads(n)
    if getattr(_local, 'threaded', 0) and not getattr(_local, 'single', 0):
        _use.threaded, _use.limited = 1, old.limited
    elif old.threaded and old.limited:
        for lib, n in zip(_blas_controllers(), old.limited):
            if lib.get_num_threads() != n:
                lib.set_num_threads(n)


if hasattr(os, 'register_at_fork'):
    os.register_at_fork(after_in_child=_after_fork_in_child)
