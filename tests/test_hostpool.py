"""The host thread pool (``xpnet/backend/hostpool.py``) and the ops that use it.

The pool is exercised with its splitting forced (``pool`` fixture: three threads, every
array worth splitting, every product split), so these tests mean the same on a one-core
machine: the split ops must give the serial results, background jobs must finish before
``backward`` returns, and errors must surface in the caller.
"""
import os
import threading
import time

import numpy as np
import pytest

import xpnet
from xpnet import autograd, nd
from xpnet import layers as nn
from xpnet.backend import blas, hostpool
from xpnet.ops import conv as conv_ops
from xpnet.ops._rows import relu_values


@pytest.fixture
def pool(monkeypatch):
    """Force the pool on: 3 threads, no size thresholds (every split and background job
    taken), no recent threaded product."""
    previous = hostpool.set_host_threads(3)
    monkeypatch.setattr(hostpool, 'SPLIT_BYTES', 0)
    monkeypatch.setattr(hostpool, 'SPLIT_MNK', 0)
    monkeypatch.setattr(conv_ops, 'BACKGROUND_MIN_MACS', 0)
    monkeypatch.setattr(hostpool, '_blas_awake_until', 0.0)
    yield
    hostpool.set_host_threads(previous)
    assert hostpool.jobs_running() == 0


@pytest.fixture
def serial():
    previous = hostpool.set_host_threads(1)
    yield
    hostpool.set_host_threads(previous)


# ---- run_parts / map_parts ----------------------------------------------------------------------

def test_run_parts_covers_the_range_once_on_several_threads(pool):
    seen, names = [], set()
    lock = threading.Lock()

    def part(lo, hi):
        with lock:
            seen.extend(range(lo, hi))
            names.add(threading.current_thread().name)
    hostpool.run_parts(part, 10)
    assert sorted(seen) == list(range(10))
    assert len(names) == 3


def test_run_parts_reraises_a_part_error_after_every_part_ran(pool):
    done = []

    def part(lo, hi):
        if lo > 0:
            raise RuntimeError(f'part {lo} failed')
        done.append(lo)
    with pytest.raises(RuntimeError, match='failed'):
        hostpool.run_parts(part, 9)
    assert done == [0]
    out = np.zeros(9)
    hostpool.run_parts(lambda lo, hi: out.__setitem__(slice(lo, hi), 1), 9)   # still usable
    assert out.sum() == 9


def test_nested_run_parts_run_serially_in_the_part(pool):
    calls = []

    def inner(lo, hi):
        calls.append((threading.current_thread().name, lo, hi))

    def outer(lo, hi):
        hostpool.run_parts(inner, 4)
    hostpool.run_parts(outer, 3)
    assert sorted((lo, hi) for _, lo, hi in calls) == [(0, 4)] * 3


def test_one_thread_runs_the_whole_range_in_the_caller(serial):
    calls = []
    hostpool.run_parts(lambda lo, hi: calls.append((threading.current_thread(), lo, hi)), 7)
    assert calls == [(threading.current_thread(), 0, 7)]


def test_map_parts_returns_results_in_order(pool):
    assert [r for r in hostpool.map_parts(lambda lo, hi: (lo, hi), 9)] == \
        [(0, 3), (3, 6), (6, 9)]


def test_pool_threads_each_keep_to_one_cpu(pool):
    import os
    if not hasattr(os, 'sched_getaffinity') or len(os.sched_getaffinity(0)) < 2 or \
            not hostpool.PIN_THREADS:
        pytest.skip('needs CPU affinity control and two CPUs')
    mine = os.sched_getaffinity(0)
    seen = {}
    lock = threading.Lock()

    def part(lo, hi):
        import time
        time.sleep(0.01)
        with lock:
            seen[threading.current_thread().name] = os.sched_getaffinity(0)
    hostpool.run_parts(part, 3)
    assert seen.pop(threading.current_thread().name) == mine      # the caller: untouched
    assert seen and all(len(cpus) == 1 and cpus <= mine for cpus in seen.values())


def test_set_host_threads_rejects_nonsense():
    with pytest.raises(ValueError, match='positive integer'):
        hostpool.set_host_threads(0)


# ---- products -------------------------------------------------------------------------------------

@pytest.mark.parametrize('a_shape,b_shape', [
    ((40, 7), (7, 5)),          # rows split
    ((5, 7), (7, 40)),          # columns split
    ((3, 200), (200, 4)),       # long reduction: partial products added
    ((6,), (6, 4)),             # vector: one thread
    ((3, 5, 6), (3, 6, 2)),     # batched: one thread
])
def test_matmul_matches_numpy(a_shape, b_shape, pool):
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal(a_shape), rng.standard_normal(b_shape)
    np.testing.assert_allclose(hostpool.matmul(a, b), a @ b, rtol=1e-12, atol=1e-12)
    if len(a_shape) == 2 and len(b_shape) == 2:
        out = np.empty((a_shape[0], b_shape[1]))
        assert hostpool.matmul(a, b, out=out) is out
        np.testing.assert_allclose(out, a @ b, rtol=1e-12, atol=1e-12)
        at = np.asfortranarray(a)                 # a transposed-memory operand
        np.testing.assert_allclose(hostpool.matmul(at, b), a @ b, rtol=1e-12, atol=1e-12)


def test_matmul_long_reduction_when_the_pool_runs_serially(pool, monkeypatch):
    """The partial products are the parts that actually ran (here one: the pool is
    'awake'), never uninitialized memory."""
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((3, 300)), rng.standard_normal((300, 4))
    monkeypatch.setattr(hostpool, 'blas_threads_awake', lambda: True)
    np.testing.assert_allclose(hostpool.matmul(a, b), a @ b, rtol=1e-12, atol=1e-12)


def test_matmul_passes_device_arrays_through():
    from xpnet.backend import sim, to_device
    a = to_device(np.ones((2, 3)), sim(0))
    b = to_device(np.ones((3, 2)), sim(0))
    from xpnet.backend import to_host
    for mm in (hostpool.matmul, hostpool.threaded_matmul):
        y = mm(a, b)
        assert type(y) is type(a)
        out = to_device(np.zeros((2, 2)), sim(0))
        mm(a, b, out=out)
        np.testing.assert_array_equal(to_host(out), np.full((2, 2), 3.0))


def test_threaded_product_marks_blas_awake_and_run_parts_goes_serial(pool):
    if not blas.blas_controllable():
        pytest.skip('OpenBLAS thread control not available')
    a = np.ones((200, 200), dtype=np.float32)
    hostpool.threaded_matmul(a, a)
    assert hostpool.blas_threads_awake()
    names = set()
    hostpool.run_parts(lambda lo, hi: names.add(threading.current_thread().name), 6)
    assert names == {threading.current_thread().name}


def test_blas_thread_count_is_restored(pool):
    if not blas.blas_controllable():
        pytest.skip('OpenBLAS thread control not available')
    get = blas._funcs[0]
    before = get()
    hostpool.run_parts(lambda lo, hi: np.ones((4, 4)) @ np.ones((4, 4)), 6)
    hostpool.defer(lambda: np.ones((4, 4)) @ np.ones((4, 4))).result()
    assert get() == before


def test_gil_switch_interval_is_lowered_only_while_threads_run(pool):
    import sys
    before = sys.getswitchinterval()
    seen = []
    hostpool.run_parts(lambda lo, hi: seen.append(sys.getswitchinterval()), 6)
    assert max(seen) <= hostpool.GIL_SWITCH_SECONDS
    assert sys.getswitchinterval() == before


# ---- background jobs ------------------------------------------------------------------------------

def needs_jobs():
    if not hostpool.can_split_blas():
        pytest.skip('background jobs need OpenBLAS thread control')


def test_defer_returns_the_value_later(pool):
    needs_jobs()
    d = hostpool.defer(lambda: (1, np.arange(3)))
    assert hostpool.is_deferred(d)
    assert d.part(0).result() == 1
    np.testing.assert_array_equal(d.part(1).result(), np.arange(3))
    assert hostpool.resolve(5) == 5


def test_defer_runs_now_without_a_second_thread(serial):
    assert hostpool.defer(lambda: 42) == 42


def test_deferred_error_is_raised_by_result(pool):
    needs_jobs()

    def job():
        raise ValueError('bad job')
    d = hostpool.defer(job)
    with pytest.raises(ValueError, match='bad job'):
        d.result()


def test_a_queued_job_is_run_by_the_thread_waiting_for_it(pool):
    needs_jobs()
    release = threading.Event()
    blocker = hostpool.defer(lambda: release.wait(5))
    ran_in = []
    second = hostpool.defer(lambda: ran_in.append(threading.current_thread().name))
    second.result()                       # the job thread is busy: the caller runs it
    assert ran_in == [threading.current_thread().name]
    release.set()
    assert blocker.result() is True


# ---- the autograd engine and deferred gradients ---------------------------------------------------

def _op_with_deferred_grads(x, w):
    """y = x * w, whose backward returns both gradients as background jobs."""
    from xpnet.ops._base import record_op
    xd, wd = x._data, w._data

    def backward(g):
        return (hostpool.defer(lambda: g * wd), hostpool.defer(lambda: (g * xd).sum(axis=0)))
    return record_op(backward, (x, w), xd * wd, x._ctx)


def test_backward_takes_deferred_gradients_for_leaves_and_inner_nodes(pool):
    x = nd.array(np.arange(6.0).reshape(3, 2))
    w = nd.array(np.array([2.0, -1.0]))
    x.attach_grad()
    w.attach_grad()
    with autograd.record():
        h = x * 1.0                       # an inner node: its gradient is needed at once
        y = _op_with_deferred_grads(h, w)
        z = _op_with_deferred_grads(h, w)  # w used twice: two deferred grads accumulate
        loss = (y + z).sum()
    loss.backward()
    assert hostpool.jobs_running() == 0
    np.testing.assert_allclose(x.grad.asnumpy(), 2 * np.tile([2.0, -1.0], (3, 1)))
    np.testing.assert_allclose(w.grad.asnumpy(), 2 * np.arange(6.0).reshape(3, 2).sum(0))


def test_error_in_a_deferred_gradient_surfaces_from_backward(pool):
    needs_jobs()
    from xpnet.ops._base import record_op
    x = nd.array(np.ones(3))
    x.attach_grad()

    def backward(g):
        def job():
            raise FloatingPointError('job failed')
        return (hostpool.defer(job),)
    with autograd.record():
        y = record_op(backward, (x,), x._data * 2, x._ctx)
    with pytest.raises(FloatingPointError, match='job failed'):
        y.backward()


# ---- split ops equal serial ones -----------------------------------------------------------------

def _step_grads(build, x, threads):
    previous = hostpool.set_host_threads(threads)
    try:
        xpnet.random.seed(0)
        net = build()
        net.initialize(init=xpnet.init.Xavier())
        net.cast('float64')
        xa = nd.array(x, dtype=np.float64)
        xa.attach_grad()
        with autograd.record():
            out = net(xa)
            loss = (out * out).sum()
        loss.backward()
        grads = [p.grad().asnumpy() for p in net.collect_params().values()
                 if p.grad_req != 'null']
        return out.asnumpy(), xa.grad.asnumpy(), grads
    finally:
        hostpool.set_host_threads(previous)


def _cnn():
    net = nn.HybridSequential()
    net.add(nn.Conv2D(16, 3, padding=1), nn.BatchNorm(), nn.Activation('relu'),
            nn.Conv2D(16, 3, padding=1), nn.BatchNorm(), nn.Activation('relu'),
            nn.MaxPool2D(2), nn.Conv2D(8, 3, padding=(1, 2), in_channels=16),
            nn.MaxPool2D(3, 2, ceil_mode=True), nn.Conv2D(4, 2, strides=2))
    return net


@pytest.mark.parametrize('batch', [5, 1])
def test_cnn_with_split_ops_matches_serial(batch, pool):
    """Winograd (16 channels), the channels-first unfolding (3 channels), max pooling,
    BatchNorm + ReLU (fused by the Sequential) and the generic path, every part split
    over three threads (odd batch: uneven parts)."""
    x = np.random.default_rng(0).standard_normal((batch, 3, 12, 12))
    serial_run = _step_grads(_cnn, x, 1)
    split_run = _step_grads(_cnn, x, 3)
    for a, b in zip(serial_run[:2], split_run[:2]):
        np.testing.assert_allclose(b, a, rtol=1e-10, atol=1e-10)
    for a, b in zip(serial_run[2], split_run[2]):
        np.testing.assert_allclose(b, a, rtol=1e-10, atol=1e-10)


def test_winograd_chunks_match_whole_batch(pool, monkeypatch):
    """Parts walk their samples in chunks (tiny chunks here) with the same result."""
    from xpnet.ops import winograd
    x = np.random.default_rng(2).standard_normal((7, 16, 9, 9))
    whole = _step_grads(_cnn, x, 3)
    monkeypatch.setattr(winograd, 'CHUNK_BYTES', 1)
    chunked = _step_grads(_cnn, x, 3)
    for a, b in zip(whole[:2] + tuple(whole[2]), chunked[:2] + tuple(chunked[2])):
        np.testing.assert_allclose(b, a, rtol=1e-10, atol=1e-10)


# ---- the ReLU kernel ------------------------------------------------------------------------------

@pytest.mark.parametrize('make', [
    lambda a: a,                                        # C-contiguous
    lambda a: a.transpose(0, 3, 1, 2),                  # channels-last memory
    lambda a: a[:, ::2],                                # not one block: plain maximum
])
def test_relu_values_matches_maximum(make):
    a = make(np.random.default_rng(0).standard_normal((4, 70, 60, 5)).astype(np.float32))
    a[0, 0, 0, 0] = np.nan
    y = relu_values(np, a)
    assert y.dtype == a.dtype and y.shape == a.shape
    np.testing.assert_array_equal(y, np.maximum(a, 0))
    b = a.copy()
    assert relu_values(np, b, out=b) is b
    np.testing.assert_array_equal(b, np.maximum(a, 0))


def test_relu_values_keeps_integers():
    a = np.arange(-20000, 20000, dtype=np.int32)
    np.testing.assert_array_equal(relu_values(np, a), np.maximum(a, 0))
    assert relu_values(np, a).dtype == np.int32


@pytest.mark.skipif(not hasattr(__import__('os'), 'fork'), reason='needs os.fork')
def test_pool_works_in_a_forked_child(pool):
    """A child forked after the pool started has none of its threads: it starts afresh
    instead of waiting forever for threads that do not exist."""
    import os
    hostpool.run_parts(lambda lo, hi: None, 6)           # parent's threads exist
    assert hostpool.resolve(hostpool.defer(lambda: 1)) == 1
    pid = os.fork()
    if pid == 0:                                          # child
        result = []

        def work():
            out = np.zeros(6)
            hostpool.run_parts(lambda lo, hi: out.__setitem__(slice(lo, hi), 1), 6)
            result.append(out.sum() == 6 and hostpool.resolve(hostpool.defer(lambda: 7)) == 7)
        code = 1
        try:
            t = threading.Thread(target=work, daemon=True)
            t.start()
            t.join(20)
            code = 3 if t.is_alive() else (0 if result == [True] else 2)
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


# ---- keeping the caller off the pool's CPUs ---------------------------------------------------

def _affinity_or_skip():
    if not hasattr(os, 'sched_getaffinity'):
        pytest.skip('no sched_getaffinity on this platform')
    mask = os.sched_getaffinity(0)
    if len(mask) < 2:
        pytest.skip('needs two CPUs')
    return mask


def test_caller_pinned_keeps_the_thread_off_pool_cpus_and_restores(monkeypatch):
    mask = _affinity_or_skip()
    taken = max(mask)
    monkeypatch.setattr(hostpool, '_pool_cpus', {taken})
    with hostpool.caller_pinned():
        assert os.sched_getaffinity(0) == mask - {taken}
        with hostpool.caller_pinned():               # nested: unchanged, not restored early
            assert os.sched_getaffinity(0) == mask - {taken}
        assert os.sched_getaffinity(0) == mask - {taken}
    assert os.sched_getaffinity(0) == mask


def test_caller_pinned_leaves_the_mask_alone_when_nothing_is_gained(monkeypatch):
    mask = _affinity_or_skip()
    monkeypatch.setattr(hostpool, '_pool_cpus', set(mask))     # no CPU would be left
    with hostpool.caller_pinned():
        assert os.sched_getaffinity(0) == mask
    monkeypatch.setattr(hostpool, '_pool_cpus', set())          # pool threads not pinned
    with hostpool.caller_pinned():
        assert os.sched_getaffinity(0) == mask
    assert os.sched_getaffinity(0) == mask


def test_backward_restores_the_callers_cpu_mask(pool, monkeypatch):
    mask = _affinity_or_skip()
    monkeypatch.setattr(hostpool, '_pool_cpus', {max(mask)})
    seen = []
    x = nd.array(np.arange(6.0))
    x.attach_grad()
    with autograd.record():
        y = (x * 2).sum()
    from xpnet import autograd as engine
    orig = engine.resolve_pending

    def spy(values):
        seen.append(os.sched_getaffinity(0))
        return orig(values)
    monkeypatch.setattr('xpnet.autograd.resolve_pending', spy)
    y.backward()
    assert seen == [mask - {max(mask)}]
    assert os.sched_getaffinity(0) == mask
    np.testing.assert_allclose(x.grad.asnumpy(), 2.0)


def test_a_pool_thread_started_by_a_pinned_caller_gets_its_own_cpu(monkeypatch):
    """Threads inherit their creator's CPU mask: one started while the caller is pinned
    must still pin itself among all of the caller's CPUs, not the narrowed set."""
    mask = _affinity_or_skip()
    monkeypatch.setattr(hostpool, '_pool_cpus', {max(mask)})
    with hostpool.caller_pinned():
        worker = hostpool._Worker(0)          # pins itself to the 2nd allowed CPU
    expected = {sorted(mask)[1]}
    for _ in range(200):
        if os.sched_getaffinity(worker._thread.native_id) == expected:
            break
        time.sleep(0.005)
    assert os.sched_getaffinity(worker._thread.native_id) == expected
    worker.start(lambda lo, hi: None, 0, 1)
    assert worker.join() is None


@pytest.mark.parametrize('kind', ['spin', 'lock'])
def test_signals_hand_over_between_threads(kind):
    if kind == 'spin' and hostpool._SPIN is None:
        pytest.skip('no glibc spinlocks here')
    make = hostpool._SpinSignal if kind == 'spin' else hostpool._LockSignal
    ping, pong = make(), make()
    seen = []

    def other():
        for i in range(50):
            ping.wait()
            seen.append(i)
            pong.post()
    t = threading.Thread(target=other)
    t.start()
    for i in range(50):
        ping.post()
        pong.wait()
        assert seen[-1] == i                 # the other side ran exactly once per post
    t.join()


def test_split_without_spin_join(tmp_path):
    """XPNET_SPIN_JOIN=0 (or no glibc): the join sleeps on a lock; results are the same."""
    import subprocess
    import sys
    code = ('import numpy as np\n'
            'from xpnet.backend import hostpool\n'
            'assert hostpool._SPIN is None\n'
            'hostpool.set_host_threads(3)\n'
            'out = np.zeros(10)\n'
            'def part(lo, hi): out[lo:hi] = np.arange(lo, hi)\n'
            'for _ in range(20): hostpool.run_parts(part, 10)\n'
            'assert (out == np.arange(10)).all()\n')
    env = dict(os.environ, XPNET_SPIN_JOIN='0')
    subprocess.run([sys.executable, '-c', code], env=env, check=True, timeout=60)
