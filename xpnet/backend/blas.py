"""Control of NumPy's bundled OpenBLAS thread count (the one place xpnet touches it).

Chains of small dependent matrix products (a recurrent loop: (20, 200) x (200, 800) per
step) run faster on one BLAS thread: splitting each product costs more than it gains, and
far more when the cores are shared. ``single_thread_blas(active)`` switches OpenBLAS to one
thread for a block. It is reference-counted, so nested or concurrent users (device threads)
restore the previous setting only when the last one leaves. It is a no-op off the CPU and
when the library or its symbols are not found.

Example::

    with single_thread_blas(x.xp is numpy and small):
        for t in range(T): ...
"""
import ctypes
import glob
import os
import threading

import numpy as np

__all__ = ['single_thread_blas', 'blas_controllable']

_funcs = None      # (get_num_threads, set_num_threads), False when unavailable
_lock = threading.Lock()
_users = 0
_saved = None


def _load():
    global _funcs
    _funcs = False
    try:
        libdir = os.path.dirname(np.__file__) + '.libs'
        for path in glob.glob(os.path.join(libdir, '*openblas*')):
            lib = ctypes.CDLL(path)
            for pre, suf in (('scipy_openblas', '64_'), ('scipy_openblas', ''),
                             ('openblas', '64_'), ('openblas', '')):
                get = getattr(lib, f'{pre}_get_num_threads{suf}', None)
                put = getattr(lib, f'{pre}_set_num_threads{suf}', None)
                if get is not None and put is not None:
                    get.restype = ctypes.c_int
                    put.argtypes = [ctypes.c_int]
                    _funcs = (get, put)
                    return
    except OSError:
        pass


def blas_controllable():
    """True when NumPy's OpenBLAS thread count can be switched (the library was found)."""
    if _funcs is None:
        _load()
    return bool(_funcs)


class single_thread_blas:
    """Context manager: OpenBLAS on one thread inside the block when ``active``."""

    def __init__(self, active=True):
        self._active = active

    def __enter__(self):
        global _users, _saved
        if not self._active:
            return self
        if _funcs is None:
            _load()
        if not _funcs:
            self._active = False
            return self
        with _lock:
            if _users == 0:
                get, put = _funcs
                _saved = get()
                if _saved != 1:
                    put(1)
            _users += 1
        return self

    def __exit__(self, *exc):
        global _users
        if self._active:
            with _lock:
                _users -= 1
                if _users == 0 and _saved not in (None, 1):
                    _funcs[1](_saved)
        return False


def _after_fork_in_child():
    global _users, _saved, _lock
    _lock = threading.Lock()
    _users, _saved = 0, None


if hasattr(os, 'register_at_fork'):
    os.register_at_fork(after_in_child=_after_fork_in_child)
