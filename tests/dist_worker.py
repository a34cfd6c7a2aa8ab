"""Checks run under ``mpiexec -n N python tests/dist_worker.py CHECK...`` by test_distributed.py.

Each check runs on every rank; rank 0 prints ``OK <check>`` after it passed everywhere. A
failing assertion ends the job through xpnet.distributed's abort hook (exit status != 0).

The equivalence checks train one model per rank on its shard of a batch with
``kvstore='dist_sync'`` and, in the same process, a reference model on the whole batch; after
every step the parameters must match the reference to float32 rounding and be bit-identical
on every rank.
"""
import ctypes
import sys
import time
import warnings

import numpy as np

import xpnet
import xpnet.distributed as dist
from xpnet import autograd
from xpnet import layers as nn
from xpnet.backend import sim
from xpnet.distributed import device as dist_device
from xpnet.layers import rnn
from xpnet.parallel import parallel_apply

RTOL, ATOL = 2e-5, 2e-6


def shard(n):
    """This rank's rows of a batch of ``n`` (np.array_split: uneven when n % size != 0)."""
    return np.array_split(np.arange(n), dist.size())[dist.rank()]


def same_on_every_rank(net):
    """Every parameter is bit-identical on every rank."""
    flat = np.concatenate([p.data().asnumpy().ravel().view(np.uint32)
                           for p in net.collect_params().values()])
    everyone = dist.allgather(flat[None])
    assert (everyone == everyone[0]).all(), 'parameters differ between ranks'


def assert_close(net, ref, what, rtol=RTOL, atol=ATOL):
    for (name, p), q in zip(net.collect_params().items(), ref.collect_params().values()):
        assert p.data().dtype == q.data().dtype, (name, p.data().dtype)   # float32 stays
        np.testing.assert_allclose(p.data().asnumpy(), q.data().asnumpy(), rtol=rtol,
                                   atol=atol, err_msg=f'{what}: {name}')


def train_pair(make, opt, opt_args, x, y, loss_fn, steps=4, batch_axis=0, check=None,
               ctx=None, make_ref=None, rtol=RTOL, atol=ATOL, **trainer_args):
    """Train ``make(seed)`` on this rank's shard (dist, on ``ctx``) and ``make_ref(0)``
    (default ``make``) on the whole batch on the CPU; rank r > 0 starts from other
    weights, which the Trainer must replace by rank 0's."""
    ref, net = (make_ref or make)(0), make(dist.rank())
    if ctx is not None:
        net.collect_params().reset_ctx(ctx)
    ref_tr = xpnet.Trainer(ref.collect_params(), opt, dict(opt_args))
    tr = xpnet.Trainer(net.collect_params(), opt, dict(opt_args),
                       **dict({'kvstore': 'dist_sync'}, **trainer_args))
    rows = shard(x.shape[batch_axis])
    xs, ys = np.take(x, rows, axis=batch_axis), y[rows]
    for step in range(steps):
        with autograd.record():
            loss = loss_fn(ref(xpnet.array(x)), xpnet.array(y))
        loss.backward()
        ref_tr.step(len(y))
        with autograd.record():
            loss = loss_fn(net(xpnet.array(xs, ctx=ctx)), xpnet.array(ys, ctx=ctx))
        loss.backward()
        if check is not None:
            check(step, tr)
        tr.step(len(ys))
        assert_close(net, ref, f'step {step}', rtol, atol)
        same_on_every_rank(net)
    return net, tr


def mlp(seed):
    xpnet.random.seed(seed)
    net = nn.Sequential()
    net.add(nn.Dense(16, activation='relu', in_units=6),
            nn.Dense(8, activation='tanh', in_units=16), nn.Dense(3, in_units=8))
    net.initialize()
    return net


def check_api():
    r, n = dist.rank(), dist.size()
    assert dist.is_initialized() and dist.local_size() == n and dist.local_rank() == r
    assert dist.default_context() == xpnet.cpu()
    for ctx in (xpnet.cpu(), sim(0)):
        x = xpnet.nd.array(np.full((2, 3), r + 1.0), ctx=ctx)
        assert dist.allreduce(x) is x
        np.testing.assert_array_equal(x.asnumpy(), np.full((2, 3), n * (n + 1) / 2))
        x = dist.allreduce(xpnet.nd.array(np.full((2, 3), r + 1.0), ctx=ctx), average=True)
        np.testing.assert_array_equal(x.asnumpy(), np.full((2, 3), (n + 1) / 2))
        b = dist.broadcast(xpnet.nd.array([r, 2 * r], ctx=ctx), root=n - 1)
        np.testing.assert_array_equal(b.asnumpy(), [n - 1, 2 * (n - 1)])
        g = dist.allgather(xpnet.nd.array(np.full((r + 1, 2), r), ctx=ctx))
        assert g.context == ctx
        np.testing.assert_array_equal(g.asnumpy()[:, 0],
                                      np.repeat(np.arange(n), np.arange(1, n + 1)))
    h = np.arange(4.0) * (r + 1)
    dist.allreduce(h)
    np.testing.assert_array_equal(h, np.arange(4.0) * n * (n + 1) / 2)
    try:
        dist.allreduce(xpnet.nd.array([1, 2], dtype='int32'), average=True)
        raise AssertionError('average of integers must raise')
    except TypeError:
        pass
    try:
        dist.broadcast(xpnet.nd.array([1.0]), root=n)
        raise AssertionError('a root outside the job must raise')
    except ValueError:
        pass
    obj = dist.broadcast_object({'step': 3, 'rng': np.arange(5) + r, 'nested': [(1, 'a')]}
                                if r == 0 else None)
    assert obj['step'] == 3 and obj['nested'] == [[1, 'a']]
    np.testing.assert_array_equal(obj['rng'], np.arange(5))
    assert dist.allgather_object({'rank': r}) == [{'rank': k} for k in range(n)]
    net = mlp(r)
    dist.broadcast_parameters(net.collect_params())
    same_on_every_rank(net)
    dist.barrier()


def check_mlp():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(11, 6)).astype(np.float32)
    y = rng.integers(0, 3, 11).astype(np.float32)
    loss = xpnet.loss.SoftmaxCrossEntropyLoss()
    started = []

    def overlapped(step, tr):
        # from the third step on, buckets start during backward (layout from step 2's hooks)
        started.append(tr._dist._next)

    _, tr = train_pair(mlp, 'sgd', {'learning_rate': 0.1, 'momentum': 0.9, 'wd': 1e-3}, x, y,
                       loss, check=overlapped, bucket_mb=1e-4)
    assert len(tr._dist._buckets) >= 3 and started[0] == 0 and min(started[2:]) > 0, started
    train_pair(mlp, 'adam', {'learning_rate': 0.01}, x, y, loss)
    check_split_steps(x, y, loss)
    check_deferred_init(x, y, loss)


def check_split_steps(x, y, loss_fn):
    """allreduce_grads() leaves the sum over the whole batch; clipping then update()."""
    ref, net = mlp(0), mlp(dist.rank())
    ref_tr = xpnet.Trainer(ref.collect_params(), 'sgd', {'learning_rate': 0.1})
    tr = xpnet.Trainer(net.collect_params(), 'sgd', {'learning_rate': 0.1}, kvstore='dist')
    rows = shard(len(y))
    for step in range(2):
        for model, xb, yb in ((ref, x, y), (net, x[rows], y[rows])):
            with autograd.record():
                loss = loss_fn(model(xpnet.array(xb)), xpnet.array(yb))
            loss.backward()
        ref_tr.allreduce_grads()
        tr.allreduce_grads()
        for p, q in zip(net.collect_params().values(), ref.collect_params().values()):
            np.testing.assert_allclose(p.grad().asnumpy(), q.grad().asnumpy(), rtol=RTOL,
                                       atol=ATOL)
        for t, model in ((ref_tr, ref), (tr, net)):
            xpnet.utils.clip_global_norm([p.grad() for p in model.collect_params().values()],
                                         0.5 * len(y))
            t.update(len(y) if t is ref_tr else len(rows))
        assert_close(net, ref, f'split step {step}')
        same_on_every_rank(net)


def check_deferred_init(x, y, loss_fn):
    """Shapes inferred at the first forward: rank 0's weights win, with a warning when the
    ranks had drawn different ones."""
    for seed_of_rank, expect_warning in ((lambda r: 5, False), (lambda r: 5 + r, True)):
        xpnet.random.seed(seed_of_rank(dist.rank()))
        net = nn.Sequential()
        net.add(nn.Dense(8, activation='relu'), nn.Dense(3))
        net.initialize()
        tr = xpnet.Trainer(net.collect_params(), 'sgd', {'learning_rate': 0.1},
                           kvstore='dist_sync')
        rows = shard(len(y))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter('always')
            for _ in range(2):
                with autograd.record():
                    loss = loss_fn(net(xpnet.array(x[rows])), xpnet.array(y[rows]))
                loss.backward()
                tr.step(len(rows))
        warned = any('differed between ranks' in str(w.message) for w in caught)
        assert warned == (expect_warning and dist.rank() == 0), (warned, expect_warning)
        same_on_every_rank(net)


def check_accumulate_and_stale():
    """grad_req='add' (reduced at the step, after two micro-batches), and a parameter
    only rank 0 uses: updated on every rank, from rank 0's gradient."""
    rng = np.random.default_rng(7)
    x = rng.normal(size=(8, 6)).astype(np.float32)
    y = rng.integers(0, 3, 8).astype(np.float32)
    loss_fn = xpnet.loss.SoftmaxCrossEntropyLoss()
    ref, net = mlp(0), mlp(dist.rank())
    for model in (ref, net):
        for p in model.collect_params().values():
            p.grad_req = 'add'
    ref_tr = xpnet.Trainer(ref.collect_params(), 'sgd', {'learning_rate': 0.1, 'momentum': 0.9})
    tr = xpnet.Trainer(net.collect_params(), 'sgd', {'learning_rate': 0.1, 'momentum': 0.9},
                       kvstore='dist_sync')
    rows = shard(8)
    for step in range(2):
        for model, t, idx in ((ref, ref_tr, np.arange(8)), (net, tr, rows)):
            model.zero_grad()
            for half in np.array_split(idx, 2):               # two micro-batches
                with autograd.record():
                    loss_fn(model(xpnet.array(x[half])), xpnet.array(y[half])).backward()
            t.step(len(idx))
        assert_close(net, ref, f'accumulate step {step}')
        same_on_every_rank(net)
    head = nn.Dense(2, in_units=3)
    head.initialize()
    both = nn.Sequential()
    both.add(mlp(1), head)
    tr = xpnet.Trainer(both.collect_params(), 'sgd', {'learning_rate': 0.5}, kvstore='dist')
    before = head.weight.data().asnumpy()
    with autograd.record():
        out = both[0](xpnet.array(x[rows]))
        loss = (both[1](out) if dist.rank() == 0 else out).sum()
    loss.backward()
    tr.step(len(rows))              # no stale error: rank 0 gave the head a gradient
    assert not np.array_equal(head.weight.data().asnumpy(), before)
    same_on_every_rank(both)


def cnn(seed, bn=nn.SyncBatchNorm):
    xpnet.random.seed(seed)
    net = nn.Sequential()
    # no conv bias: BatchNorm cancels it, its gradient is rounding noise that Adam amplifies
    net.add(nn.Conv2D(4, 3, in_channels=2, use_bias=False), bn(in_channels=4),
            nn.Activation('relu'), nn.GlobalAvgPool2D(), nn.Dense(3, in_units=4))
    net.initialize()
    return net


def check_cnn():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(7, 2, 5, 5)).astype(np.float32)
    x += np.arange(7, dtype=np.float32)[:, None, None, None]   # shards' statistics differ
    y = rng.integers(0, 3, 7).astype(np.float32)
    # SyncBatchNorm on shards against BatchNorm on the batch (running statistics included)
    train_pair(cnn, 'sgd', {'learning_rate': 0.1, 'momentum': 0.9}, x, y,
               xpnet.loss.SoftmaxCrossEntropyLoss(), steps=3,
               make_ref=lambda seed: cnn(seed, nn.BatchNorm), kvstore='dist_sync_device')


def lstm(seed):
    xpnet.random.seed(seed)
    net = nn.Sequential()
    net.add(rnn.LSTM(5, input_size=3), nn.Dense(2, in_units=5, flatten=False))
    net.initialize()
    return net


def check_lstm():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(4, 7, 3)).astype(np.float32)       # TNC: the batch is axis 1
    y = rng.normal(size=(7, 4, 2)).astype(np.float32)

    def loss(pred, label):
        return xpnet.loss.L2Loss()(pred.transpose(1, 0, 2), label)
    train_pair(lstm, 'adam', {'learning_rate': 0.01}, x, y, loss, steps=3, batch_axis=1)


def embed(seed):
    xpnet.random.seed(seed)
    net = nn.Sequential()
    net.add(nn.Embedding(20, 4, sparse_grad=True), nn.Dense(2, in_units=4, flatten=False))
    net.initialize()
    return net


def check_sparse():
    rng = np.random.default_rng(3)
    x = rng.integers(0, 20, size=(9, 3)).astype(np.float32)
    y = rng.normal(size=(9, 3, 2)).astype(np.float32)
    for opt, args in (('sgd', {'learning_rate': 0.1, 'momentum': 0.9}),
                      ('adam', {'learning_rate': 0.01})):
        net, _ = train_pair(embed, opt, args, x, y, xpnet.loss.L2Loss(), steps=3)
        rows_here = set(x[shard(9)].ravel().astype(int).tolist())
        assert rows_here != set(range(20))      # the ranks did touch different rows


def check_devices():
    """Two devices per rank: replicas summed first, SyncBatchNorm over all devices of all
    ranks."""
    ctxs = [xpnet.cpu(0), xpnet.cpu(1)]
    rng = np.random.default_rng(4)
    x = rng.normal(size=(12, 2, 4, 4)).astype(np.float32)
    x += np.arange(12, dtype=np.float32)[:, None, None, None] / 4
    y = rng.integers(0, 3, 12).astype(np.float32)
    loss = xpnet.loss.SoftmaxCrossEntropyLoss()
    ref, net = cnn(0, nn.BatchNorm), cnn(dist.rank())
    net.collect_params().reset_ctx(ctxs)
    ref_tr = xpnet.Trainer(ref.collect_params(), 'adam', {'learning_rate': 0.01})
    tr = xpnet.Trainer(net.collect_params(), 'adam', {'learning_rate': 0.01},
                       kvstore='dist_sync', bucket_mb=1e-4)
    rows = np.array_split(np.arange(12), dist.size())[dist.rank()]
    assert len(rows) % 2 == 0
    for step in range(3):
        with autograd.record():
            loss(ref(xpnet.array(x)), xpnet.array(y)).backward()
        ref_tr.step(12)
        xs = xpnet.utils.split_and_load(x[rows], ctxs)
        ys = xpnet.utils.split_and_load(y[rows], ctxs)

        def one(xi, yi):
            with autograd.record():
                value = loss(net(xi), yi)
            value.backward()
        parallel_apply(one, list(zip(xs, ys)))
        tr.step(len(rows))
        assert_close(net, ref, f'devices step {step}')
        for p in net.collect_params().values():
            a, b = (d.asnumpy() for d in p.list_data())
            np.testing.assert_array_equal(a, b)
        same_on_every_rank(net)


class FakeNcclRuntime:
    """Stands in for CuPy under NcclBackend on the simulated device: 'device pointers' are
    the SimArray's host memory, 'NCCL' is MPI over them, streams and events are no-ops."""

    def __init__(self, comm):
        self.nccl = _FakeNccl(comm.comm.Dup(), comm.mpi)

    def device(self, ctx):
        return _Null()

    def ptr(self, arr):
        return arr._a.ctypes.data

    def current_stream(self):
        return _FakeStream()

    new_stream = current_stream

    def new_event(self):
        return _FakeEvent()


class _Null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


class _FakeStream:
    ptr = 0

    def wait_event(self, event):
        pass


class _FakeEvent:
    done = True

    def record(self, stream=None):
        pass


class _FakeNccl:
    NCCL_INT8, NCCL_UINT8, NCCL_INT32, NCCL_INT64 = 0, 1, 2, 4
    NCCL_FLOAT16, NCCL_FLOAT32, NCCL_FLOAT64, NCCL_SUM = 6, 7, 8, 0
    _CTYPES = {0: np.int8, 1: np.uint8, 2: np.int32, 4: np.int64, 6: np.float16,
               7: np.float32, 8: np.float64}
    calls = {}

    def __init__(self, mpi_comm, mpi):
        self.mpi_comm, self.mpi = mpi_comm, mpi
        fake = self

        class NcclCommunicator:
            def __init__(self, ndev, uid, rank):
                assert uid == bytes(range(128)) and ndev == mpi_comm.size \
                    and rank == mpi_comm.rank, (uid, ndev, rank)

            def allReduce(self, send, recv, count, dtype, op, stream):
                assert op == fake.NCCL_SUM
                fake._count('allReduce')
                source = mpi.IN_PLACE if send == recv else fake._view(send, count, dtype)
                mpi_comm.Allreduce(source, fake._view(recv, count, dtype))

            def broadcast(self, send, recv, count, dtype, root, stream):
                fake._count('broadcast')
                mpi_comm.Bcast(fake._view(recv, count, dtype), root=root)

            def allGather(self, send, recv, count, dtype, stream):
                fake._count('allGather')
                mpi_comm.Allgather(fake._view(send, count, dtype),
                                   fake._view(recv, count * mpi_comm.size, dtype))
        self.NcclCommunicator = NcclCommunicator

    def get_unique_id(self):
        return bytes(range(128))

    def _count(self, name):
        self.calls[name] = self.calls.get(name, 0) + 1

    def _view(self, ptr, count, dtype):
        kind = np.dtype(self._CTYPES[dtype])
        raw = (ctypes.c_char * (count * kind.itemsize)).from_address(ptr)
        return np.frombuffer(raw, dtype=kind, count=count)


def check_nccl_path():
    """The NCCL backend's code path (unique id over MPI, pointers, counts, dtypes, the
    bucket flow) on the simulated device, against the fake runtime above."""
    dist_device.set_backend_factory(
        'sim', lambda comm, ctx: dist_device.NcclBackend(comm, ctx, FakeNcclRuntime(comm)))
    try:
        ctx = sim(0)
        r, n = dist.rank(), dist.size()
        x = xpnet.nd.array(np.full(3, r + 1.0), ctx=ctx)
        dist.allreduce(x)
        np.testing.assert_array_equal(x.asnumpy(), np.full(3, n * (n + 1) / 2))
        b = dist.broadcast(xpnet.nd.array(np.full(2, r, np.float64), ctx=ctx), root=n - 1)
        np.testing.assert_array_equal(b.asnumpy(), [n - 1, n - 1])
        g = dist.allgather(xpnet.nd.array(np.full(2, r, np.int64), ctx=ctx))
        np.testing.assert_array_equal(g.asnumpy(), np.repeat(np.arange(n), 2))
        rng = np.random.default_rng(5)
        x = rng.normal(size=(10, 6)).astype(np.float32)
        y = rng.integers(0, 3, 10).astype(np.float32)
        for bucket_mb in (None, 1e-4):         # packed buckets; each gradient alone
            before = _FakeNccl.calls.get('allReduce', 0)
            train_pair(mlp, 'sgd', {'learning_rate': 0.1}, x, y,
                       xpnet.loss.SoftmaxCrossEntropyLoss(), steps=3, ctx=ctx,
                       bucket_mb=bucket_mb)
            assert _FakeNccl.calls['allReduce'] >= before + 3, _FakeNccl.calls
    finally:
        dist_device.set_backend_factory('sim', None)


def check_gpu():
    """Ranks on GPUs (gpu(local_rank)): NCCL with one GPU per rank, else host staging
    (XPNET_DIST_DEVICE_COMM=host, set by the test); the reference runs on the CPU."""
    ctx = dist.default_context()
    assert ctx.device_type == 'gpu', ctx
    rng = np.random.default_rng(6)
    x = rng.normal(size=(10, 2, 5, 5)).astype(np.float32)
    x += np.arange(10, dtype=np.float32)[:, None, None, None]
    y = rng.integers(0, 3, 10).astype(np.float32)
    for bucket_mb in (None, 1e-4):
        _, tr = train_pair(cnn, 'sgd', {'learning_rate': 0.1, 'momentum': 0.9}, x, y,
                           xpnet.loss.SoftmaxCrossEntropyLoss(), steps=3, ctx=ctx,
                           make_ref=lambda seed: cnn(seed, nn.BatchNorm), rtol=1e-4, atol=1e-5,
                           bucket_mb=bucket_mb)
        backend = type(tr._dist._comm.device_backend(ctx)).__name__
        expected = 'HostStagedBackend' if xpnet.num_gpus() < dist.size() else 'NcclBackend'
        assert backend == expected, (backend, expected)
    v = dist.allreduce(xpnet.nd.array(np.full(3, dist.rank() + 1.0), ctx=ctx), average=True)
    np.testing.assert_allclose(v.asnumpy(), np.full(3, (dist.size() + 1) / 2))


def check_raise():
    dist.barrier()
    if dist.rank() == 1:
        raise ValueError('rank 1 fails on purpose')
    dist.barrier()         # the other ranks would wait here forever without the abort
    time.sleep(60)


def check_timeout():
    dist.barrier()
    dist.init(timeout=1.5)
    if dist.rank() == dist.size() - 1:
        time.sleep(30)     # never arrives at the barrier
    dist.barrier()


CHECKS = {name[len('check_'):]: fn for name, fn in globals().items()
          if name.startswith('check_')}


if __name__ == '__main__':
    dist.init(timeout=60)
    for name in sys.argv[1:]:
        CHECKS[name]()
        dist.barrier()
        if dist.rank() == 0:
            print(f'OK {name}', flush=True)
