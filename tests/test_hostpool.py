"""The host thread pool (``xpnet/backend/hostpool.py``), the BLAS thread policy
(``xpnet/backend/blas.py``) and the autograd engine's pending gradients.

The pool is exercised with its splitting forced (``pool`` fixture: three threads, every
array worth splitting, every product split), so these tests mean the same on a one-core
machine: the split ops must give the serial results, the parts must not depend on who runs
them, background jobs must finish before ``backward`` returns, errors must surface in the
caller, and nothing of the user's process (CPU affinity, GIL switch interval, BLAS thread
count) may change.
"""
import ast
import os
import sys
import textwrap
import threading

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
    taken)."""
    previous = hostpool.set_host_threads(3)
    monkeypatch.setattr(hostpool, 'SPLIT_BYTES', 0)
    monkeypatch.setattr(hostpool, 'SPLIT_MNK', 0)
    monkeypatch.setattr(hostpool, 'K_SLAB_MIN', 4)
    monkeypatch.setattr(conv_ops, 'BACKGROUND_MIN_MACS', 0)
    yield
    hostpool.set_host_threads(previous)
    assert hostpool.jobs_running() == 0


@pytest.fixture
def serial():
    previous = hostpool.set_host_threads(1)
    yield
    hostpool.set_host_threads(previous)


def needs_jobs():
    if not hostpool.can_split_blas():
        pytest.skip('background jobs need BLAS thread control (threadpoolctl)')


# ---- run_parts / map_parts ----------------------------------------------------------------------

def test_run_parts_covers_the_range_once_on_several_threads(pool):
    seen, names = [], set()
    lock = threading.Lock()

    def part(lo, hi):
        with lock:
            seen.append((lo, hi))
            names.add(threading.current_thread().name)
    hostpool.run_parts(part, 10)
    assert sorted(seen) == [(0, 3), (3, 6), (6, 10)]
    assert len(names) == 3


def test_parts_are_the_same_however_the_pool_runs_them(pool):
    """Nested, from a second thread while the pool is busy, with a background job, or on
    a pool of one thread: the same parts (explicit count), run serially."""
    expect = [(0, 2), (2, 5), (5, 7), (7, 10)]

    def parts_of(run):
        seen = []
        lock = threading.Lock()

        def part(lo, hi):
            with lock:
                seen.append((lo, hi))
        run(part)
        return sorted(seen)
    assert parts_of(lambda f: hostpool.run_parts(f, 10, 4)) == expect
    nested = []
    hostpool.run_parts(lambda lo, hi: nested.append(parts_of(
        lambda f: hostpool.run_parts(f, 10, 4))), 3)
    assert nested == [expect] * 3
    previous = hostpool.set_host_threads(1)
    try:
        assert parts_of(lambda f: hostpool.run_parts(f, 10, 4)) == expect
    finally:
        hostpool.set_host_threads(previous)
    release, held = threading.Event(), threading.Event()

    def hold(lo, hi):
        if lo == 0:
            held.set()
            release.wait(10)
    holder = threading.Thread(target=hostpool.run_parts, args=(hold, 2))
    holder.start()
    try:
        held.wait(10)
        assert parts_of(lambda f: hostpool.run_parts(f, 10, 4)) == expect   # pool taken
    finally:
        release.set()
        holder.join()


def test_run_parts_reraises_the_first_part_error_after_every_part_ran(pool):
    done = []

    def part(lo, hi):
        if lo > 0:
            raise RuntimeError(f'part {lo} failed')
        done.append(lo)
    with pytest.raises(RuntimeError, match='part 3 failed'):
        hostpool.run_parts(part, 9)
    assert done == [0]
    out = np.zeros(9)
    hostpool.run_parts(lambda lo, hi: out.__setitem__(slice(lo, hi), 1), 9)   # still usable
    assert out.sum() == 9


def test_one_thread_runs_the_whole_range_in_the_caller(serial):
    calls = []
    hostpool.run_parts(lambda lo, hi: calls.append((threading.current_thread(), lo, hi)), 7)
    assert calls == [(threading.current_thread(), 0, 7)]


def test_map_parts_returns_results_in_order(pool):
    assert hostpool.map_parts(lambda lo, hi: (lo, hi), 9) == [(0, 3), (3, 6), (6, 9)]
    assert hostpool.map_parts(lambda lo, hi: (lo, hi), 9, 2) == [(0, 4), (4, 9)]


def test_fixed_parts_depend_on_the_size_only():
    assert hostpool.fixed_parts(10, 4, 100) == 2
    assert hostpool.fixed_parts(1, 4, 100) == 1
    assert hostpool.fixed_parts(10 ** 9, 1, 100) == hostpool.MAX_FIXED_PARTS
    assert hostpool.fixed_parts(10 ** 9, 1, 3) == 3


def test_set_host_threads_rejects_nonsense():
    with pytest.raises(ValueError, match='positive integer'):
        hostpool.set_host_threads(0)


# ---- products -------------------------------------------------------------------------------------

@pytest.mark.parametrize('a_shape,b_shape', [
    ((40, 7), (7, 5)),          # rows split
    ((5, 7), (7, 40)),          # columns split
    ((3, 200), (200, 4)),       # long reduction: partial products added
    ((6,), (6, 4)),             # vector: one part
    ((3, 5, 6), (3, 6, 2)),     # batched: one part
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


def test_long_reduction_is_the_same_on_every_thread_count(pool):
    """The slabs of a long reduction depend on the shape only and are added in order."""
    rng = np.random.default_rng(1)
    a = rng.standard_normal((3, 3000)).astype(np.float32)
    b = rng.standard_normal((3000, 5)).astype(np.float32)
    results = []
    for threads in (1, 2, 3):
        previous = hostpool.set_host_threads(threads)
        try:
            results.append(hostpool.matmul(a, b))
        finally:
            hostpool.set_host_threads(previous)
    for r in results[1:]:
        np.testing.assert_array_equal(r, results[0])
    np.testing.assert_allclose(results[0], a @ b, rtol=1e-4, atol=1e-4)


def test_matmul_passes_device_arrays_through():
    from xpnet.backend import sim, to_device, to_host
    a = to_device(np.ones((2, 3)), sim(0))
    b = to_device(np.ones((3, 2)), sim(0))
    for mm in (hostpool.matmul, hostpool.threaded_matmul):
        y = mm(a, b)
        assert type(y) is type(a)
        out = to_device(np.zeros((2, 2)), sim(0))
        mm(a, b, out=out)
        np.testing.assert_array_equal(to_host(out), np.full((2, 2), 3.0))


# ---- the BLAS thread policy ------------------------------------------------------------------------

def _blas_threads():
    from threadpoolctl import threadpool_info
    return [i['num_threads'] for i in threadpool_info() if i['user_api'] == 'blas']


def test_blas_runs_on_one_thread_inside_splits_and_is_restored(pool):
    if not blas.blas_controllable():
        pytest.skip('BLAS thread control not available')
    before = _blas_threads()
    inside = []
    hostpool.run_parts(lambda lo, hi: inside.append(_blas_threads()), 6)
    hostpool.defer(lambda: inside.append(_blas_threads())).result()
    assert inside and all(n == [1] * len(before) for n in inside)
    assert _blas_threads() == before


def test_threaded_products_wait_for_single_thread_regions_of_other_threads():
    """A threaded product never runs while another thread holds the BLAS on one thread
    (its rounding would depend on the timing); inside a region it runs on one thread."""
    entered, release, order = threading.Event(), threading.Event(), []

    def region():
        with blas.single_thread_blas():
            entered.set()
            release.wait(10)
            order.append('region done')
    t = threading.Thread(target=region)
    t.start()
    entered.wait(10)
    threading.Timer(0.2, release.set).start()
    with blas.threaded_blas():
        order.append('threaded product')
    t.join()
    assert order == ['region done', 'threaded product']
    with blas.single_thread_blas():
        with blas.threaded_blas():          # nested: runs at once, in the region
            assert blas.in_single_thread_blas()


def test_splits_inside_a_threaded_section_run_in_the_caller(pool):
    seen = []
    with blas.threaded_blas():              # (pool threads would wait for the section)
        hostpool.run_parts(lambda lo, hi: seen.append((threading.current_thread(), lo, hi)),
                           6)
        assert hostpool.defer(lambda: 3) == 3
    me = threading.current_thread()
    assert seen == [(me, 0, 2), (me, 2, 4), (me, 4, 6)]


# ---- background jobs ------------------------------------------------------------------------------

def test_defer_returns_the_value_later(pool):
    needs_jobs()
    d = hostpool.defer(lambda: (1, np.arange(3)))
    assert hostpool.is_deferred(d) and autograd.is_pending(d)
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


# ---- the autograd engine and pending gradients ---------------------------------------------------

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


class _Pending:
    """A pending gradient that is not the pool's: the engine only needs ``result()``."""

    def __init__(self, value):
        self.value, self.calls = value, 0

    def result(self):
        self.calls += 1
        return self.value


def test_the_engine_accepts_any_pending_gradient():
    from xpnet.ops._base import record_op
    x = nd.array(np.ones(3))
    x.attach_grad()
    pending = _Pending(np.full(3, 5.0))
    with autograd.record():
        y = record_op(lambda g: (pending,), (x,), x._data * 2, x._ctx)
    y.backward()
    np.testing.assert_array_equal(x.grad.asnumpy(), np.full(3, 5.0))
    assert pending.calls == 1


def test_the_engine_does_not_import_the_thread_pool():
    import xpnet.autograd as engine
    tree = ast.parse(open(engine.__file__).read())
    imported = [getattr(n, 'module', None) or '' for n in ast.walk(tree)
                if isinstance(n, (ast.Import, ast.ImportFrom))]
    imported += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    assert not any('hostpool' in m or m.endswith('blas') for m in imported)


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

def _step_grads(build, x, threads, background=True):
    previous = hostpool.set_host_threads(threads)
    saved = conv_ops.BACKGROUND_MIN_MACS
    if not background:
        conv_ops.BACKGROUND_MIN_MACS = 1 << 62
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
        conv_ops.BACKGROUND_MIN_MACS = saved


def _cnn():
    net = nn.HybridSequential()
    net.add(nn.Conv2D(16, 3, padding=1), nn.BatchNorm(), nn.Activation('relu'),
            nn.Conv2D(16, 3, padding=1), nn.BatchNorm(), nn.Activation('relu'),
            nn.MaxPool2D(2), nn.Conv2D(8, 3, padding=(1, 2), in_channels=16),
            nn.MaxPool2D(3, 2, ceil_mode=True), nn.Conv2D(4, 2, strides=2),
            nn.Conv2DTranspose(4, 3, strides=2))
    return net


@pytest.mark.parametrize('batch', [5, 1])
def test_cnn_with_split_ops_matches_serial(batch, pool):
    """Winograd (16 channels), the channels-first unfolding (3 channels), max pooling,
    BatchNorm + ReLU (fused by the Sequential), the generic path and a transposed
    convolution, every part split over three threads (odd batch: uneven parts)."""
    x = np.random.default_rng(0).standard_normal((batch, 3, 12, 12))
    serial_run = _step_grads(_cnn, x, 1)
    split_run = _step_grads(_cnn, x, 3)
    for a, b in zip(serial_run[:2] + tuple(serial_run[2]), split_run[:2] + tuple(split_run[2])):
        np.testing.assert_allclose(b, a, rtol=1e-10, atol=1e-10)


def test_background_jobs_give_the_numbers_of_inline_work(pool):
    needs_jobs()
    x = np.random.default_rng(3).standard_normal((4, 3, 12, 12))
    inline = _step_grads(_cnn, x, 3, background=False)
    background = _step_grads(_cnn, x, 3, background=True)
    for a, b in zip(inline[2], background[2]):
        np.testing.assert_array_equal(b, a)


def test_winograd_chunks_match_whole_batch(pool, monkeypatch):
    """Parts walk their samples in chunks (tiny chunks here) with the same result."""
    from xpnet.ops import winograd
    x = np.random.default_rng(2).standard_normal((7, 16, 9, 9))
    whole = _step_grads(_cnn, x, 3)
    monkeypatch.setattr(winograd, 'CHUNK_BYTES', 1)
    chunked = _step_grads(_cnn, x, 3)
    for a, b in zip(whole[:2] + tuple(whole[2]), chunked[:2] + tuple(chunked[2])):
        np.testing.assert_allclose(b, a, rtol=1e-10, atol=1e-10)


def test_batch_norm_sums_are_the_same_on_every_thread_count(pool):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((6, 8, 10, 10)).astype(np.float32) + 3
    results = []
    for threads in (1, 2, 3):
        previous = hostpool.set_host_threads(threads)
        try:
            bn = nn.BatchNorm(in_channels=8)
            bn.initialize()
            xa = nd.array(x)
            xa.attach_grad()
            with autograd.record():
                y = bn(xa)
            y.backward(nd.array(np.cos(x)))
            results.append([y.asnumpy(), xa.grad.asnumpy(), bn.gamma.grad().asnumpy()])
        finally:
            hostpool.set_host_threads(previous)
    for r in results[1:]:
        for a, b in zip(results[0], r):
            np.testing.assert_array_equal(b, a)


def test_transposed_convolution_weight_gradient_is_the_same_on_every_thread_count(pool):
    """Its partial products come from parts of the batch fixed by the shape, added in
    order, in the same pass as the input gradient."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((5, 6, 7, 7)).astype(np.float32)
    head = rng.standard_normal((5, 4, 14, 14)).astype(np.float32)
    results = []
    for threads in (1, 2, 3):
        previous = hostpool.set_host_threads(threads)
        try:
            layer = nn.Conv2DTranspose(4, 4, strides=2, padding=1, in_channels=6)
            layer.initialize(init=xpnet.init.Constant(0.1))
            xa = nd.array(x)
            xa.attach_grad()
            with autograd.record():
                y = layer(xa)
            y.backward(nd.array(head))
            results.append([xa.grad.asnumpy(), layer.weight.grad().asnumpy()])
        finally:
            hostpool.set_host_threads(previous)
    for r in results[1:]:
        np.testing.assert_array_equal(r[1], results[0][1])
        np.testing.assert_allclose(r[0], results[0][0], rtol=1e-6, atol=1e-6)


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


# ---- the user's process is left alone -------------------------------------------------------------

@pytest.mark.skipif(not hasattr(os, 'fork'), reason='needs os.fork')
def test_pool_works_in_a_forked_child(pool):
    """A child forked after the pool started has none of its threads: it starts afresh
    instead of waiting forever for threads that do not exist."""
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


def _hooked(x, hook):
    """``x * 1`` whose backward calls ``hook()`` first (a user's backward hook)."""
    from xpnet.ops._base import record_op

    def backward(g):
        hook()
        return (g,)
    return record_op(backward, (x,), x._data * 1, x._ctx)


def test_a_training_step_leaves_affinity_and_switch_interval_alone(pool):
    """The caller's CPU mask and GIL switch interval, those of a thread the user starts
    from a backward hook, and those of xpnet's own threads are the process's, before and
    after a training step whose splits and background jobs all ran."""
    if not hasattr(os, 'sched_getaffinity'):
        pytest.skip('no sched_getaffinity on this platform')
    mask, interval = os.sched_getaffinity(0), sys.getswitchinterval()
    seen, go = {}, threading.Event()

    def user_thread():
        seen['during'] = (os.sched_getaffinity(0), sys.getswitchinterval())
        go.wait(10)
        seen['after'] = (os.sched_getaffinity(0), sys.getswitchinterval())
    threads = []

    def hook():
        t = threading.Thread(target=user_thread)
        t.start()
        threads.append(t)
    net = _cnn()
    net.initialize()
    x = nd.array(np.random.default_rng(5).standard_normal((4, 3, 12, 12)).astype(np.float32))
    with autograd.record():
        loss = (_hooked(net(x), hook) ** 2).sum()
    loss.backward()
    assert (os.sched_getaffinity(0), sys.getswitchinterval()) == (mask, interval)
    go.set()
    threads[0].join(10)
    assert seen == {'during': (mask, interval), 'after': (mask, interval)}
    for t in threading.enumerate():
        if t.name.startswith('xpnet-host') and t.native_id is not None:
            assert os.sched_getaffinity(t.native_id) == mask, t.name


def test_pool_size_honours_the_cpus_the_process_may_use(monkeypatch):
    monkeypatch.delenv('XPNET_HOST_THREADS', raising=False)
    if hasattr(os, 'sched_getaffinity'):
        monkeypatch.setattr(os, 'sched_getaffinity', lambda pid: {0, 5, 7})
        assert hostpool._default_threads() == 3
    monkeypatch.setenv('XPNET_HOST_THREADS', '2')
    assert hostpool._default_threads() == 2
    monkeypatch.setenv('XPNET_HOST_THREADS', 'many')
    with pytest.raises(ValueError, match='XPNET_HOST_THREADS'):
        hostpool._default_threads()


def test_tune_host_is_an_explicit_opt_in():
    """Nothing is tuned by default; XPNET_TUNE_HOST=1 (a fresh process: the tuning is
    process-wide) applies the malloc thresholds and nothing else: the affinity and the GIL
    switch interval stay the process's."""
    import subprocess
    from xpnet.backend import tune
    assert tune.tuned() == {}
    code = textwrap.dedent('''
        import os, sys
        before = (sorted(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity')
                  else None, sys.getswitchinterval())
        import numpy as np
        from xpnet.backend import hostpool, tune
        hostpool.set_host_threads(2)
        hostpool.run_parts(lambda lo, hi: None, 4)
        after = (sorted(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity')
                 else None, sys.getswitchinterval())
        assert before == after, (before, after)
        print(sorted(tune.tuned()))
    ''')
    env = dict(os.environ, XPNET_TUNE_HOST='1',
               PYTHONPATH=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    done = subprocess.run([sys.executable, '-c', code], env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    expect = "['malloc']" if sys.platform.startswith('linux') else '[]'
    assert done.stdout.strip() == expect
    env['XPNET_TUNE_HOST'] = 'yes'
    bad = subprocess.run([sys.executable, '-c', 'import xpnet'], env=env,
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and 'XPNET_TUNE_HOST must be 0 or 1' in bad.stderr


def _threaded_blas_counts():
    """The BLAS thread counts now (skipping when they cannot be changed or are 1)."""
    if not blas.blas_controllable():
        pytest.skip('BLAS thread control not available')
    blas.settle()
    before = _blas_threads()
    if max(before) < 2:
        pytest.skip('the BLAS runs on one thread here already')
    return before


def test_a_restore_another_thread_could_not_make_is_made_later_and_never_taken_as_the_users():
    # OpenBLAS (0.3.31) ignores a raise of its count by another thread than the main one
    # after the main thread lowered it: the last thread leaving the regions may fail to
    # restore; the count must come back, and 1 must not be mistaken for the user's setting
    before = _threaded_blas_counts()
    entered, release = threading.Event(), threading.Event()

    def other():
        with blas.single_thread_blas():
            entered.set()
            release.wait(10)
    t = threading.Thread(target=other)
    with blas.single_thread_blas():             # this thread lowers the count first
        t.start()
        entered.wait(10)
    release.set()
    t.join()                                    # the other thread leaves last
    with blas.single_thread_blas():             # a new region: the user's count is kept
        pass
    blas.settle()
    assert _blas_threads() == before


def test_threaded_limit_lowers_the_blas_count_only_while_xpnet_products_run():
    before = _threaded_blas_counts()
    inside = []
    prev = blas.set_threaded_limit(1)
    try:
        with blas.threaded_blas():
            inside.append(_blas_threads())
            with blas.threaded_blas():                  # nested: still limited
                inside.append(_blas_threads())
        y = hostpool.threaded_matmul(np.ones((64, 64), np.float32), np.ones((64, 64), np.float32))
        assert y[0, 0] == 64
    finally:
        blas.set_threaded_limit(prev)
    assert inside == [[1] * len(before)] * 2
    assert _blas_threads() == before                   # the user's setting, outside
    with pytest.raises(ValueError, match='at least 1'):
        blas.set_threaded_limit(0)


def test_distributed_ranks_sharing_a_machine_limit_only_xpnet_products(monkeypatch):
    from xpnet.distributed import world as world_mod

    class FakeWorld:
        local_size, rank = 64, 0
    for v in ('OPENBLAS_NUM_THREADS', 'OMP_NUM_THREADS', 'MKL_NUM_THREADS',
              'XPNET_HOST_THREADS'):
        monkeypatch.delenv(v, raising=False)
    prev_limit, prev_threads = blas.threaded_limit(), hostpool.host_threads()
    try:
        world_mod._share_cpus(FakeWorld())
        assert blas.threaded_limit() == 1 and hostpool.host_threads() == 1
        blas.set_threaded_limit(None)
        monkeypatch.setenv('OPENBLAS_NUM_THREADS', '2')     # the user's count stands
        world_mod._share_cpus(FakeWorld())
        assert blas.threaded_limit() is None
    finally:
        blas.set_threaded_limit(prev_limit)
        hostpool.set_host_threads(prev_threads)
