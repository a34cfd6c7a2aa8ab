"""Training across processes and machines: data parallel over MPI, NCCL between GPUs.

Launch the same script once per rank with MPI (``pip install "xpnet[mpi]"`` brings mpi4py
and an ``mpiexec``)::

    mpiexec -n 4 python train.py                  # 4 ranks on this machine
    mpiexec -hosts a,b -n 8 python train.py       # 8 ranks over two machines

and in the script::

    import xpnet.distributed as dist
    dist.init()
    ctx = dist.default_context()                  # gpu(local_rank) when there are GPUs
    trainer = xpnet.Trainer(net.collect_params(), 'sgd', {...}, kvstore='dist_sync')
    sampler = xpnet.data.SplitSampler(len(train_set), shuffle=True)   # this rank's shard
    loader = xpnet.data.DataLoader(train_set, batch_size=32, sampler=sampler)

Without a launcher every function works in a world of one rank, without mpi4py.

The collectives here take NDArrays (or host ``numpy`` arrays) and work in place where the
result has the input's shape. Host arrays go through MPI's buffer interface, GPU arrays
through NCCL (see :mod:`xpnet.distributed.device`). Every rank must make the same calls in
the same order; each waits at most ``init(timeout=...)`` seconds and then raises
:class:`DistributedTimeoutError` naming the ranks that did not arrive. ``broadcast_object``
and ``allgather_object`` carry JSON-like values and host arrays, never pickles.

See ``docs/distributed.md`` for the design.
"""
import json

import numpy as np

from ..backend import cpu, num_gpus, gpu
from ..ndarray import NDArray, _wrap
from .comm import Communicator
from .reducer import _broadcast_replicas
from .world import (DistributedTimeoutError, get_world, init, is_initialized, launched_under_mpi,
                    local_rank, local_size, rank, size)

__all__ = ['init', 'is_initialized', 'rank', 'size', 'local_rank', 'local_size', 'barrier',
           'allreduce', 'broadcast', 'allgather', 'broadcast_parameters', 'broadcast_object',
           'allgather_object', 'any_rank', 'default_context', 'communicator',
           'launched_under_mpi', 'DistributedTimeoutError']

_default = []     # the Communicator behind the functions below, made at first use


def communicator(name=None):
    """The communicator of the module-level functions, or (with ``name``) a new private one
    for an independent user (created collectively: every rank at the same point)."""
    world = get_world()
    if name is not None:
        return Communicator(world, name)
    if not _default:
        _default.append(Communicator(world, 'world'))
    return _default[0]


def default_context():
    """This rank's device: ``gpu(local_rank() % num_gpus())`` when GPUs exist, else ``cpu()``."""
    n = num_gpus()
    return gpu(local_rank() % n) if n else cpu()


def _target(x, fn):
    if isinstance(x, NDArray):
        return x._data, x._ctx
    if isinstance(x, np.ndarray):
        return x, cpu()
    raise TypeError(f'dist.{fn}: expected an NDArray or a numpy array, got {type(x).__name__}')


def barrier():
    """Wait until every rank reached this call."""
    communicator().barrier()


def allreduce(x, average=False):
    """Sum ``x`` over all ranks, in place; with ``average=True`` divide by ``size()``.

    Args:
        x: an NDArray (any device) or a host ``numpy.ndarray`` of the same shape and dtype
            on every rank.
        average: mean instead of sum (floating-point arrays only).

    Returns:
        ``x``, now holding the sum (or mean) on every rank.

    Example::

        loss_sum = xpnet.nd.array([total_loss, count])
        dist.allreduce(loss_sum)           # the job's totals on every rank
    """
    data, ctx = _target(x, 'allreduce')
    if average and data.dtype.kind != 'f':
        raise TypeError(f'dist.allreduce: average=True needs a floating-point array, '
                        f'got {data.dtype}')
    comm = communicator()
    with ctx.use():
        comm.allreduce(data, ctx)
        if average and comm.size > 1:
            data *= data.dtype.type(1.0 / comm.size)
    return x


def any_rank(flag):
    """True on every rank if ``flag`` is true on some rank (one small allreduce): a
    decision every rank takes together, e.g. to stop when one rank wants to."""
    total = np.array([1.0 if flag else 0.0])
    communicator().allreduce(total, cpu())
    return bool(total[0] > 0)


def broadcast(x, root=0):
    """Overwrite ``x`` on every rank with ``root``'s value, in place; returns ``x``."""
    data, ctx = _target(x, 'broadcast')
    _check_root(root)
    with ctx.use():
        communicator().broadcast(data, ctx, root)
    return x


def allgather(x):
    """Every rank's ``x`` concatenated along axis 0, in rank order (as Horovod's allgather).

    The first dimension may differ between ranks; the others must agree. Returns a new
    array of the input's kind (NDArray on the same device, or numpy array).
    """
    data, ctx = _target(x, 'allgather')
    comm = communicator()
    if data.ndim == 0:
        data = data.reshape(1)
    shapes = comm.allgather(np.array(data.shape, np.int64), cpu())
    if (shapes[:, 1:] != shapes[0, 1:]).any():
        raise ValueError(f'dist.allgather: the arrays differ beyond axis 0: '
                         f'{[tuple(s) for s in shapes.tolist()]}')
    with ctx.use():
        if (shapes[:, 0] == shapes[0, 0]).all():
            out = comm.allgather(data, ctx)
            out = out.reshape((-1,) + tuple(data.shape[1:]))
        else:    # uneven lengths: through the host
            from ..backend import to_device, to_host
            out = to_device(comm.allgatherv(np.ascontiguousarray(to_host(data))), ctx)
    return _wrap(out, ctx) if isinstance(x, NDArray) else out


def broadcast_parameters(params, root=0):
    """Give every rank ``root``'s values of ``params`` (a ParameterDict, dict or list of
    Parameters; uninitialized ones are skipped), on every device replica."""
    _check_root(root)
    comm = communicator()
    plist = list(params.values()) if isinstance(params, dict) else list(params)
    for p in plist:
        datas = getattr(p, '_data', None)
        if datas:
            _broadcast_replicas(comm, datas, root)


def broadcast_object(obj, root=0):
    """``root``'s ``obj`` on every rank: JSON values (dict, list, str, numbers, bools,
    None) with host numpy arrays anywhere inside, sent without pickling. Tuples come back
    as lists. Other ranks' ``obj`` is ignored (pass None)."""
    _check_root(root)
    comm = communicator()
    if comm.size == 1:
        return obj
    arrays = []
    blob = _encode(obj, arrays).encode() if comm.rank == root else b''
    meta = np.array([len(blob)], np.int64)
    comm.broadcast(meta, cpu(), root)
    buf = np.frombuffer(blob, np.uint8).copy() if comm.rank == root \
        else np.empty(int(meta[0]), np.uint8)
    comm.broadcast(buf, cpu(), root)
    desc = json.loads(buf.tobytes().decode())
    return _decode(desc, lambda spec, i: comm.broadcast(
        arrays[i] if comm.rank == root else np.empty(spec['shape'], spec['dtype']),
        cpu(), root))


def allgather_object(obj):
    """Every rank's ``obj`` (JSON values and host arrays, as :func:`broadcast_object`), as a
    list in rank order."""
    comm = communicator()
    if comm.size == 1:
        return [obj]
    return [broadcast_object(obj if r == comm.rank else None, root=r) for r in range(comm.size)]


def _check_root(root):
    n = size()
    if not isinstance(root, (int, np.integer)) or not 0 <= root < n:
        raise ValueError(f'dist: root must be a rank in [0, {n}), got {root!r}')


def _encode(obj, arrays):
    """JSON text of ``obj`` with each numpy array replaced by a reference into ``arrays``."""
    def walk(v):
        if isinstance(v, np.ndarray):
            arrays.append(np.ascontiguousarray(v))
            return {'__ndarray__': len(arrays) - 1, 'shape': list(v.shape),
                    'dtype': v.dtype.str}
        if isinstance(v, dict):
            return {str(k): walk(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [walk(x) for x in v]
        if isinstance(v, np.generic):
            return v.item()
        return v
    return json.dumps(walk(obj))


def _decode(desc, fetch):
    """Rebuild an object from :func:`_encode`'s JSON, asking ``fetch(spec, i)`` for arrays
    in the order they were encoded (depth first, as ``walk`` visits them)."""
    def walk(v):
        if isinstance(v, dict):
            if '__ndarray__' in v:
                return fetch(v, v['__ndarray__'])
            return {k: walk(x) for k, x in v.items()}
        if isinstance(v, list):
            return [walk(x) for x in v]
        return v
    return walk(desc)
