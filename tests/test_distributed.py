"""Data parallel across processes (xpnet.distributed, Trainer(kvstore='dist_sync')).

The multi-rank tests start ``mpiexec -n N python tests/dist_worker.py CHECK...`` (each launch
runs several checks; see that file) and skip when mpi4py or mpiexec are missing. The rest
check the world of one rank that every process outside MPI gets, without mpi4py.
"""
import functools
import importlib.util
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import xpnet
import xpnet.distributed as dist
from xpnet import autograd
from xpnet import layers as nn
from xpnet.distributed import world

HERE = os.path.dirname(os.path.abspath(__file__))
WORKER = os.path.join(HERE, 'dist_worker.py')


@functools.lru_cache(maxsize=None)
def _mpiexec():
    """The mpiexec beside this Python (pip's mpich puts it there), else the one on PATH,
    with the flags Open MPI needs for more ranks than cores (and as root)."""
    if importlib.util.find_spec('mpi4py') is None:
        return None
    local = os.path.join(os.path.dirname(sys.executable), 'mpiexec')
    exe = local if os.path.exists(local) else shutil.which('mpiexec')
    if exe is None:
        return None
    version = subprocess.run([exe, '--version'], capture_output=True, text=True).stdout
    flags = []
    if 'Open MPI' in version or 'OpenRTE' in version:
        flags = ['--oversubscribe'] + (['--allow-run-as-root'] if os.geteuid() == 0 else [])
    return [exe] + flags


def run_ranks(n, *checks, timeout=120, script=WORKER, **env_vars):
    """``mpiexec -n n python script *checks`` (one compute thread per rank)."""
    cmd = _mpiexec()
    if cmd is None:
        pytest.skip('mpi4py or mpiexec is not installed (pip install "xpnet[mpi]")')
    env = dict(os.environ, XPNET_HOST_THREADS='1', OMP_NUM_THREADS='1',
               OPENBLAS_NUM_THREADS='1',
               PYTHONPATH=os.pathsep.join(filter(None, [os.path.dirname(HERE),
                                                        os.environ.get('PYTHONPATH')])))
    env.pop('XPNET_DIST_TIMEOUT', None)
    env.update(env_vars)
    return subprocess.run(cmd + ['-n', str(n), sys.executable, script, *checks],
                          capture_output=True, text=True, timeout=timeout, env=env)


def _passed(proc, checks):
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for check in checks:
        assert f'OK {check}' in proc.stdout, proc.stdout + proc.stderr


def test_two_ranks_on_shards_equal_one_process_on_the_batch():
    checks = ['api', 'mlp', 'accumulate_and_stale', 'cnn', 'lstm', 'sparse', 'devices',
              'nccl_path']
    _passed(run_ranks(2, *checks), checks)


def test_three_ranks_with_uneven_shards():
    checks = ['api', 'mlp', 'cnn', 'lstm', 'sparse', 'devices']
    _passed(run_ranks(3, *checks), checks)


def test_a_rank_that_raises_aborts_the_job():
    proc = run_ranks(2, 'raise', timeout=60)     # hangs (and times out) without the abort
    assert proc.returncode != 0
    assert 'rank 1 of 2 raised ValueError: rank 1 fails on purpose' in proc.stderr
    assert 'ValueError: rank 1 fails on purpose' in proc.stderr


def test_a_collective_past_the_timeout_names_the_missing_rank():
    proc = run_ranks(3, 'timeout', timeout=60)
    assert proc.returncode != 0
    assert 'DistributedTimeoutError' in proc.stderr
    assert 'rank(s) [2] did not arrive' in proc.stderr
    assert 'barrier #2' in proc.stderr


def test_loop_example_trains_across_two_ranks(tmp_path):
    pytest.importorskip('sklearn')
    script = os.path.join(os.path.dirname(HERE), 'examples', 'train_digits_dist_loop.py')
    proc = run_ranks(2, '--epochs', '3', '--out', str(tmp_path), script=script)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith('epoch')]
    assert len(lines) == 3                                 # rank 0 alone reports
    assert float(lines[-1].split()[-1]) > 0.8              # validation accuracy
    assert os.listdir(tmp_path) == ['digits.params.npz']   # written once


@pytest.mark.skipif(xpnet.num_gpus() == 0, reason='needs a GPU')
def test_two_ranks_on_gpus():
    # one GPU: both ranks on it, reducing through the host (NCCL refuses two ranks per GPU)
    extra = {'XPNET_DIST_DEVICE_COMM': 'host'} if xpnet.num_gpus() < 2 else {}
    _passed(run_ranks(2, 'gpu', timeout=300, **extra), ['gpu'])


@pytest.mark.skipif(xpnet.num_gpus() == 0, reason='needs a GPU')
def test_nccl_backend_on_a_gpu_with_one_rank():
    """CuPy's NCCL API as NcclBackend calls it (unique id, communicator, streams, events,
    allReduce into another buffer and in place, broadcast, allGather), with one rank."""
    from xpnet.distributed.comm import Communicator
    from xpnet.distributed.device import CupyRuntime, NcclBackend
    runtime = CupyRuntime.load()
    if runtime is None:
        pytest.skip('CuPy has no NCCL')
    ctx = xpnet.gpu(0)
    xp = ctx.xp
    backend = NcclBackend(Communicator(world.get_world(), 'nccl-test'), ctx, runtime)
    for dtype in (np.float32, np.float16, np.float64):
        a = xp.arange(6, dtype=dtype)
        out = xp.zeros_like(a)
        backend.iallreduce(a, out, 1).wait()
        backend.iallreduce(a, a, 2).wait()
        np.testing.assert_array_equal(out.get(), np.arange(6))
        np.testing.assert_array_equal(a.get(), np.arange(6))
    b = xp.full(3, 7.0)
    backend.broadcast(b, 0, 3)
    np.testing.assert_array_equal(b.get(), [7, 7, 7])
    g = backend.allgather(xp.arange(4, dtype=xp.int64), 4)
    np.testing.assert_array_equal(g.get(), [[0, 1, 2, 3]])


# ---- one process: the world of one rank ----------------------------------------------------

def test_world_of_one_rank_without_mpi(monkeypatch):
    for var in world._LAUNCH_VARS:
        monkeypatch.delenv(var, raising=False)
    assert not world.launched_under_mpi()
    assert dist.init() == 1 and dist.init(timeout=5) == 1 and dist.is_initialized()
    assert (dist.rank(), dist.size(), dist.local_rank(), dist.local_size()) == (0, 1, 0, 1)
    assert 'mpi4py' not in sys.modules
    x = xpnet.nd.array([1.0, 2.0])
    assert dist.allreduce(x, average=True) is x
    np.testing.assert_array_equal(x.asnumpy(), [1, 2])
    np.testing.assert_array_equal(dist.broadcast(x).asnumpy(), [1, 2])
    np.testing.assert_array_equal(dist.allgather(x).asnumpy(), [1, 2])
    assert dist.allgather(xpnet.nd.array(3.0)).shape == (1,)
    assert dist.broadcast_object({'a': 1}) == {'a': 1}
    assert dist.allgather_object(5) == [5]
    dist.barrier()
    assert dist.default_context() == (xpnet.gpu(0) if xpnet.num_gpus() else xpnet.cpu())
    with pytest.raises(ValueError, match='root'):
        dist.broadcast(x, root=1)
    with pytest.raises(TypeError, match='NDArray'):
        dist.allreduce([1.0])
    with pytest.raises(ValueError, match='timeout'):
        dist.init(timeout=-1)


def test_launched_without_mpi4py_says_how_to_install(monkeypatch):
    monkeypatch.setenv('PMI_RANK', '0')
    monkeypatch.setitem(sys.modules, 'mpi4py', None)      # import fails
    assert world.launched_under_mpi()
    with pytest.raises(ImportError, match=r'pip install "xpnet\[mpi\]"'):
        world._import_mpi()


def _mlp():
    xpnet.random.seed(3)
    net = nn.Sequential()
    net.add(nn.Dense(4, activation='relu', in_units=3), nn.Dense(2, in_units=4))
    net.initialize()
    return net


def test_dist_kvstore_in_one_process_is_the_local_trainer():
    x = xpnet.nd.array(np.random.default_rng(0).normal(size=(6, 3)))
    nets = [_mlp(), _mlp()]
    trainers = [xpnet.Trainer(nets[0].collect_params(), 'sgd', {'learning_rate': 0.1}),
                xpnet.Trainer(nets[1].collect_params(), 'sgd', {'learning_rate': 0.1},
                              kvstore='dist_sync', bucket_mb=1)]
    for net, trainer in zip(nets, trainers):
        for _ in range(2):
            with autograd.record():
                loss = net(x).sum()
            loss.backward()
            trainer.step(6)
    for p, q in zip(nets[0].collect_params().values(), nets[1].collect_params().values()):
        np.testing.assert_array_equal(p.data().asnumpy(), q.data().asnumpy())


def test_unsupported_kvstores_and_arguments():
    params = _mlp().collect_params()
    with pytest.raises(NotImplementedError, match='dist_async'):
        xpnet.Trainer(params, 'sgd', kvstore='dist_async')
    with pytest.raises(ValueError, match='bucket_mb'):
        xpnet.Trainer(params, 'sgd', bucket_mb=4)
    for name in ('dist_sync', 'dist_sync_device', 'dist_device_sync', 'dist', 'horovod'):
        xpnet.Trainer(params, 'sgd', kvstore=name)
