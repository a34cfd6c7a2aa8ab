"""How device (GPU) arrays cross ranks: NCCL, CUDA-aware MPI, or a copy through the host.

:func:`make_backend` picks, for one communicator and one device, the first that works:

1. **NCCL** (``cupy.cuda.nccl``): one NCCL communicator per (communicator, GPU); rank 0
   draws the unique id (``nccl.get_unique_id()``) and broadcasts it over MPI, then every
   rank calls ``NcclCommunicator(size, id, rank)`` with its GPU current (as ChainerMN and
   Horovod bootstrap). Collectives run on a stream of their own that first waits for the
   work already queued on the computing stream (an event), so a reduction overlaps the
   kernels queued after it; finishing makes the computing stream wait for the reduction,
   on the GPU, without stopping the host. Completion is polled (``event.done``) so a
   missing rank is reported at the deadline instead of hanging.
2. **CUDA-aware MPI** (when NCCL is missing and the MPI library says it handles CUDA
   memory, or ``XPNET_DIST_DEVICE_COMM=mpi``): device pointers go straight to MPI after the
   computing stream is synchronized.
3. **Host staging**: copy to host memory, reduce with MPI, copy back.

``XPNET_DIST_DEVICE_COMM`` (``nccl``, ``mpi`` or ``host``) forces a choice. Tests install a
factory for a device type with :func:`set_backend_factory`: the simulated device runs the
NCCL code path against a stand-in runtime that reduces over MPI.
"""
import ctypes
import os

import numpy as np

from ..backend import to_device, to_host
from .comm import Pending

__all__ = ['make_backend', 'set_backend_factory', 'NcclBackend', 'CupyRuntime',
           'HostStagedBackend', 'CudaAwareMpiBackend']

_factories = {}       # device_type -> factory(comm, ctx), installed by tests


def set_backend_factory(device_type, factory):
    """Use ``factory(comm, ctx)`` to make backends for ``device_type`` (None removes it)."""
    if factory is None:
        _factories.pop(device_type, None)
    else:
        _factories[device_type] = factory


def make_backend(comm, ctx):
    """The backend for ``ctx``'s arrays on ``comm`` (collective: every rank calls it)."""
    factory = _factories.get(ctx.device_type)
    if factory is not None:
        return factory(comm, ctx)
    choice = os.environ.get('XPNET_DIST_DEVICE_COMM', 'auto').lower()
    if choice not in ('auto', 'nccl', 'mpi', 'host'):
        raise ValueError(f"XPNET_DIST_DEVICE_COMM must be 'nccl', 'mpi' or 'host', "
                         f'got {choice!r}')
    if ctx.device_type == 'gpu':
        if choice in ('auto', 'nccl'):
            runtime = CupyRuntime.load()
            if runtime is not None:
                return NcclBackend(comm, ctx, runtime)
            if choice == 'nccl':
                raise RuntimeError('XPNET_DIST_DEVICE_COMM=nccl, but cupy.cuda.nccl is not '
                                   'available (install NCCL, e.g. pip install nvidia-nccl-cu12)')
        if choice == 'mpi' or (choice == 'auto' and _mpi_is_cuda_aware(comm.mpi)):
            return CudaAwareMpiBackend(comm, ctx)
    return HostStagedBackend(comm, ctx)


def _mpi_is_cuda_aware(mpi):
    """Whether the MPI library reports CUDA support (MPICH's and Open MPI's extensions)."""
    try:
        lib = ctypes.CDLL(mpi.__file__)
    except OSError:
        return False
    flag = ctypes.c_int(0)
    query = getattr(lib, 'MPIX_GPU_query_support', None)       # MPICH >= 4
    if query is not None:
        return query(0, ctypes.byref(flag)) == 0 and flag.value == 1   # 0: CUDA
    query = getattr(lib, 'MPIX_Query_cuda_support', None)      # Open MPI
    return bool(query()) if query is not None else False


class HostStagedBackend:
    """Device arrays reduced through a host copy (synchronous device-to-host copies)."""

    def __init__(self, comm, ctx):
        self.comm, self.ctx = comm, ctx

    def iallreduce(self, arr, out, seq):
        return self.comm.host_staged(arr, out, self.ctx, seq)

    def broadcast(self, arr, root, seq):
        host = np.ascontiguousarray(to_host(arr))
        req = self.comm.comm.Ibcast(host, root=root)
        self.comm._wait(req.Test, seq, 1, f'{host.size} {host.dtype} from rank {root}')
        with self.ctx.use():
            arr[...] = to_device(host, self.ctx)

    def allgather(self, arr, seq):
        host = np.ascontiguousarray(to_host(arr))
        out = np.empty((self.comm.size,) + host.shape, host.dtype)
        req = self.comm.comm.Iallgather(host, out)
        self.comm._wait(req.Test, seq, 2, f'{host.size} {host.dtype} per rank')
        with self.ctx.use():
            return to_device(out, self.ctx)


class CudaAwareMpiBackend:
    """CuPy arrays handed to a CUDA-aware MPI (``__cuda_array_interface__``)."""

    def __init__(self, comm, ctx):
        self.comm, self.ctx = comm, ctx

    def _ready(self, arr):
        if not arr.flags.c_contiguous:
            raise ValueError('distributed: CUDA-aware MPI needs contiguous device arrays')
        self.ctx.xp.cuda.get_current_stream().synchronize()   # MPI reads memory directly

    def iallreduce(self, arr, out, seq):
        self._ready(arr)
        mpi = self.comm.mpi
        if out is arr:
            req = self.comm.comm.Iallreduce(mpi.IN_PLACE, arr, op=mpi.SUM)
        else:
            self._ready(out)
            req = self.comm.comm.Iallreduce(arr, out, op=mpi.SUM)
        return Pending(self.comm, req.Test, None, seq, 0, f'{arr.size} {arr.dtype}')

    def broadcast(self, arr, root, seq):
        self._ready(arr)
        req = self.comm.comm.Ibcast(arr, root=root)
        self.comm._wait(req.Test, seq, 1, f'{arr.size} {arr.dtype} from rank {root}')

    def allgather(self, arr, seq):
        self._ready(arr)
        with self.ctx.use():
            out = self.ctx.xp.empty((self.comm.size,) + arr.shape, arr.dtype)
        req = self.comm.comm.Iallgather(arr, out)
        self.comm._wait(req.Test, seq, 2, f'{arr.size} {arr.dtype} per rank')
        return out


class CupyRuntime:
    """What :class:`NcclBackend` needs from CuPy (a stand-in replaces it in tests)."""

    def __init__(self, cupy, nccl):
        self.cupy, self.nccl = cupy, nccl

    @classmethod
    def load(cls):
        """The runtime, or None when CuPy or its NCCL library is missing."""
        try:
            import cupy
            from cupy.cuda import nccl
        except Exception:     # ImportError, or a CUDA library that fails to load
            return None
        if not getattr(nccl, 'available', True):
            return None
        return cls(cupy, nccl)

    def device(self, ctx):
        return self.cupy.cuda.Device(ctx.device_id)

    def ptr(self, arr):
        return arr.data.ptr

    def current_stream(self):
        return self.cupy.cuda.get_current_stream()

    def new_stream(self):
        return self.cupy.cuda.Stream(non_blocking=True)

    def new_event(self):
        return self.cupy.cuda.Event(block=False, disable_timing=True)


class NcclBackend:
    """GPU collectives through NCCL on a communication stream (see the module docstring).

    Args:
        comm: the :class:`~xpnet.distributed.comm.Communicator` (MPI bootstraps NCCL and
            carries the arrival probes).
        ctx: the GPU this rank reduces on.
        runtime: :class:`CupyRuntime` or a stand-in with the same methods.
    """

    def __init__(self, comm, ctx, runtime):
        self.comm, self.ctx, self.rt = comm, ctx, runtime
        nccl = runtime.nccl
        self._types = {np.dtype(k): getattr(nccl, v) for k, v in (
            ('float16', 'NCCL_FLOAT16'), ('float32', 'NCCL_FLOAT32'),
            ('float64', 'NCCL_FLOAT64'), ('int32', 'NCCL_INT32'), ('int64', 'NCCL_INT64'),
            ('uint8', 'NCCL_UINT8'), ('int8', 'NCCL_INT8'))}
        uid = self._unique_id()
        with runtime.device(ctx):
            self.nccl_comm = nccl.NcclCommunicator(comm.size, uid, comm.rank)
            self.stream = runtime.new_stream()

    def _unique_id(self):
        # rank 0 draws the id and broadcasts its 128 bytes over MPI (no pickling). CuPy 14
        # returns bytes; older versions a tuple of signed chars: flag byte 0 says which.
        buf = np.zeros(129, np.uint8)
        if self.comm.rank == 0:
            uid = self.rt.nccl.get_unique_id()
            if isinstance(uid, (bytes, bytearray)):
                buf[0], buf[1:] = 1, np.frombuffer(bytes(uid), np.uint8)
            else:
                buf[1:] = np.asarray(uid, np.int64).astype(np.int8).view(np.uint8)
        self.comm.broadcast(buf, _host_ctx(), root=0)
        if buf[0]:
            return buf[1:].tobytes()
        return tuple(int(v) for v in buf[1:].view(np.int8))

    def _start(self, arr, call):
        """Queue ``call(stream_ptr)`` after the work already queued on this device; returns
        the event recorded after it."""
        if not arr.flags.c_contiguous:
            raise ValueError('distributed: NCCL needs contiguous device arrays')
        if arr.dtype not in self._types:
            raise TypeError(f'distributed: NCCL cannot reduce {arr.dtype} arrays')
        rt = self.rt
        with rt.device(self.ctx):
            queued = rt.new_event()
            queued.record(rt.current_stream())
            self.stream.wait_event(queued)
            call(self.stream.ptr)
            done = rt.new_event()
            done.record(self.stream)
        return done

    def _then(self, done):
        """Make the computing stream wait for ``done`` (on the device, host not blocked)."""
        def finish():
            with self.rt.device(self.ctx):
                self.rt.current_stream().wait_event(done)
        return finish

    def iallreduce(self, arr, out, seq):
        if out is not arr and not out.flags.c_contiguous:
            raise ValueError('distributed: NCCL needs contiguous device arrays')
        src, dst, n, kind = self.rt.ptr(arr), self.rt.ptr(out), arr.size, \
            self._types.get(arr.dtype)
        done = self._start(arr, lambda s: self.nccl_comm.allReduce(
            src, dst, n, kind, self.rt.nccl.NCCL_SUM, s))
        return Pending(self.comm, lambda: done.done, self._then(done), seq, 0,
                       f'{n} {arr.dtype} over NCCL')

    def broadcast(self, arr, root, seq):
        ptr, n, kind = self.rt.ptr(arr), arr.size, self._types.get(arr.dtype)
        done = self._start(arr, lambda s: self.nccl_comm.broadcast(ptr, ptr, n, kind, root, s))
        Pending(self.comm, lambda: done.done, self._then(done), seq, 1,
                f'{n} {arr.dtype} over NCCL from rank {root}').wait()

    def allgather(self, arr, seq):
        with self.rt.device(self.ctx):
            out = self.ctx.xp.empty((self.comm.size,) + arr.shape, arr.dtype)
        src, dst, n = self.rt.ptr(arr), self.rt.ptr(out), arr.size
        kind = self._types.get(arr.dtype)
        done = self._start(arr, lambda s: self.nccl_comm.allGather(src, dst, n, kind, s))
        Pending(self.comm, lambda: done.done, self._then(done), seq, 2,
                f'{n} {arr.dtype} per rank over NCCL').wait()
        return out


def _host_ctx():
    from ..backend import cpu
    return cpu(0)
