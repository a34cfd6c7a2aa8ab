"""The simulated device behaves like CuPy 14: exactly its namespace (from the wheel, in
xpnet/backend/cupy_names.json), its ufunc methods and keywords, its devices with a current
device per thread, and it counts kernels, host synchronisations and transfers as documented
in xpnet/backend/simulated.py."""
import json
import os
import threading

import numpy as np
import pytest

import xpnet
from xpnet import autograd, nd
from xpnet.backend import Context, context_of, run_on, sim, simulated
from xpnet.backend.simulated import SimDeviceError, SimTypeError, counting, xp

NAMES = json.load(open(os.path.join(os.path.dirname(xpnet.backend.__file__),
                                    'cupy_names.json')))


def dev(values, dtype=np.float32):
    return xp.asarray(np.asarray(values, dtype=dtype))


# ---- the namespace -------------------------------------------------------------------------

def test_namespace_is_cupys():
    assert NAMES['cupy_version'].startswith('14.')
    assert sorted(dir(xp)) == sorted(NAMES['namespaces']['cupy'])
    for name in ('errstate', 'float128', 'unstack', 'vecdot', 'geomspace', 'insert'):
        with pytest.raises(AttributeError, match='CuPy 14'):
            getattr(xp, name)                     # NumPy-only names fail, as on a GPU
    for name in ('exp', 'asnumpy', 'take_along_axis', 'fuse', 'float32', 'newaxis'):
        getattr(xp, name)
    assert xp.lib.stride_tricks.as_strided is not None and xp.linalg.norm is not None


def test_every_cupy_name_resolves_or_says_it_is_not_simulated():
    for name in NAMES['namespaces']['cupy']:
        try:
            getattr(xp, name)
        except NotImplementedError:
            pass
    simulated_cuda = {'Device', 'Stream', 'Event', 'runtime', 'get_current_stream',
                      'get_device_id', 'is_available'}
    assert simulated_cuda <= set(NAMES['name_only']['cupy.cuda'])
    assert {'getDevice', 'setDevice', 'getDeviceCount', 'deviceSynchronize'} <= \
        set(NAMES['name_only']['cupy.cuda.runtime'])


def test_function_keywords_are_cupys():
    a = dev(np.ones((2, 3)))
    with pytest.raises(TypeError, match="'sparse'"):
        xp.indices((2, 3), sparse=True)
    with pytest.raises(TypeError, match="'where'"):
        xp.sum(a, where=a > 0)
    with pytest.raises(TypeError, match="'initial'"):
        xp.max(a, initial=0)
    with pytest.raises(TypeError, match="'like'"):
        xp.zeros(3, like=a)
    with pytest.raises(TypeError, match="'axis'"):
        xp.take_along_axis(a, xp.zeros((2, 1), dtype=np.int64))     # no default axis
    with pytest.raises(TypeError, match="'where'"):
        a.sum(where=a > 0)                         # methods too
    with pytest.raises(ValueError, match='stable'):
        xp.argsort(a, kind='quicksort')
    with pytest.raises(AttributeError, match='CuPy 14'):
        a.itemset(0, 1.0)
    assert xp.indices((2, 3)).shape == (2, 2, 3)
    assert float(xp.sum(a, axis=None)) == 6


def test_ufunc_methods_and_keywords_are_cupys():
    info = NAMES['ufuncs']
    assert sorted(k for k, v in info.items() if 'at' in v) == [
        'add', 'bitwise_and', 'bitwise_or', 'bitwise_xor', 'maximum', 'minimum', 'subtract']
    assert sorted(k for k, v in info.items() if v['reduce']) == ['add', 'multiply']
    assert sorted(k for k, v in info.items() if v['reduceat']) == ['add']
    assert sorted(NAMES['ufunc_keywords']) == ['casting', 'dtype', 'out']
    a = dev(np.arange(6.0).reshape(2, 3))
    idx = xp.asarray(np.array([0, 0, 1]))
    t = xp.zeros(2, dtype=np.float32)
    xp.add.at(t, idx, dev([1, 2, 3]))
    np.testing.assert_array_equal(t.get(), [3, 3])
    for call in (lambda: xp.multiply.at(t, idx, 2.0), lambda: xp.maximum.reduce(a),
                 lambda: xp.subtract.accumulate(a), lambda: xp.multiply.reduceat(a, idx)):
        with pytest.raises(NotImplementedError, match='not supported'):
            call()
    with pytest.raises(TypeError, match='int32'):
        xp.subtract.at(t, idx, dev([1, 2, 3]))     # float atomics subtract: not in CuPy
    with pytest.raises(TypeError, match='float16'):
        xp.add.at(xp.zeros(2, dtype=np.int64), idx, 1)
    with pytest.raises(TypeError, match='Wrong arguments'):
        xp.exp(a, where=a > 1)
    np.testing.assert_array_equal(xp.add.reduce(a, axis=1).get(), [3, 12])
    np.testing.assert_array_equal(xp.add.reduceat(dev([1, 2, 3, 4]), xp.asarray(
        np.array([0, 2]))).get(), [3, 7])
    out = xp.empty((2, 3), dtype=np.float32)
    assert xp.exp(a, out=out) is out


def test_host_arrays_and_pickling_are_refused():
    a = dev([1, 2])
    with pytest.raises(SimTypeError):
        a + np.ones(2)
    with pytest.raises(SimTypeError):
        np.asarray(a)
    with pytest.raises(SimTypeError, match='index'):
        a[np.array([0])]
    with pytest.raises(SimTypeError, match='dtype object'):
        xp.asarray(np.array([object()]))
    import pickle
    with pytest.raises(SimTypeError):
        pickle.dumps(a)
    assert np.exp(a).get().dtype == np.float32     # NumPy functions dispatch to CuPy's...
    with pytest.raises(TypeError):
        np.unstack(a)                              # ...when CuPy has them


# ---- devices ---------------------------------------------------------------------------------

def test_current_device_per_thread_and_context_use():
    rt = xp.cuda.runtime
    assert rt.getDevice() == 0 and xp.cuda.Device().id == 0
    with xp.cuda.Device(1):
        assert rt.getDevice() == 1
        with sim(2).use():
            assert xp.cuda.Device().id == 2
        assert rt.getDevice() == 1
        seen = []
        t = threading.Thread(target=lambda: seen.append(rt.getDevice()))
        t.start()
        t.join()
        assert seen == [0]                         # a new thread starts on device 0
    assert rt.getDevice() == 0
    xp.cuda.Device(3).use()
    assert rt.getDevice() == 3
    xp.cuda.Device(0).use()
    with pytest.raises(xp.cuda.runtime.CUDARuntimeError):
        xp.cuda.Device(simulated.DEVICE_COUNT)
    with pytest.raises(xpnet.backend.DeviceError):
        nd.ones(1, ctx=sim(simulated.DEVICE_COUNT))


def test_arrays_live_where_they_were_allocated_and_kernels_check_it():
    a = dev([1, 2, 3])
    with xp.cuda.Device(1):
        b = dev([1, 2, 3])
        assert b.device.id == 1 and context_of(b) == sim(1)
        with pytest.raises(SimDeviceError, match=r'sim\(0\)'):
            a + 1                                  # a kernel on device 1 reading device 0
        with pytest.raises(SimDeviceError):
            xp.exp(a)
        with pytest.raises(SimDeviceError):
            a.sum()
        with pytest.raises(SimDeviceError):
            b[0] = a[0]                            # mixing two devices
        v = a.reshape(3, 1)[1:]                    # views are metadata: fine anywhere
        assert v.device.id == 0
        np.testing.assert_array_equal(a.get(), [1, 2, 3])     # reads work from anywhere
        c = xp.asarray(a)                          # a peer copy to the current device
        assert c.device.id == 1 and (c + b).device.id == 1
        d = a.copy()
        assert d.device.id == 1
    with pytest.raises(SimDeviceError):
        b * 2


def test_ndarray_ops_run_under_their_data_device():
    """Public ops, NDArray methods, backward and leaves place their work on the data's
    device; the thread's current device is untouched afterwards."""
    ctx = sim(1)
    x = nd.array(np.arange(6.0).reshape(2, 3), ctx=ctx)
    x.attach_grad()
    assert context_of(x.grad.data) == ctx
    with autograd.record():
        y = (nd.relu(x) * 2 + x.sum()).mean()
    y.backward()
    assert xp.cuda.runtime.getDevice() == 0
    assert context_of(x.grad.data) == ctx and context_of(y.data) == ctx
    np.testing.assert_allclose(x.grad.asnumpy(), 2 / 6 * (np.arange(6) > 0).reshape(2, 3) + 1)
    z = nd.zeros((2, 3), ctx=ctx)
    z[:, 1] = x[:, 1]
    z += 1
    z2 = x.copyto(sim(2))
    assert context_of(z.data) == ctx and context_of(z2.data) == sim(2)
    assert context_of(x.astype('float64').data) == ctx


def test_device_arrays_mix_with_ndarrays_without_host_round_trips():
    ctx = sim(1)
    x = nd.array([1.0, -2.0, 3.0], ctx=ctx)
    with ctx.use():
        raw = xp.asarray(np.array([1.0, 1.0, 1.0], np.float32))
        mask = xp.asarray(np.array([True, False, True]))
    with counting() as c:
        y = x + raw
        w = nd.where(mask, x, -x)
    assert c.syncs == 0 and c.htod == 0
    np.testing.assert_array_equal(y.asnumpy(), [2, -1, 4])
    np.testing.assert_array_equal(w.asnumpy(), [1, 2, 3])


def test_run_on_restores_the_device_on_errors():
    def boom():
        assert xp.cuda.runtime.getDevice() == 2
        raise KeyError('x')
    with pytest.raises(KeyError):
        run_on(sim(2), boom)
    assert xp.cuda.runtime.getDevice() == 0
    assert run_on(xpnet.cpu(3), lambda: 5) == 5


def test_parallel_apply_runs_each_call_on_its_device():
    from xpnet.parallel import parallel_apply
    xs = [nd.ones((2,), ctx=sim(i)) for i in (1, 2)]
    devices = parallel_apply(lambda x: (xp.cuda.runtime.getDevice(), (x * 2).context), xs)
    assert devices == [(1, sim(1)), (2, sim(2))]


# ---- counting --------------------------------------------------------------------------------

def test_counts_a_known_sequence():
    host = np.arange(16, dtype=np.float32).reshape(4, 4)
    with counting(trace=True) as c:
        a = xp.asarray(host)                       # htod 1
        b = xp.zeros((4, 4), dtype=np.float32)     # 1
        xp.empty((4, 4), dtype=np.float32)         # 0
        s = xp.exp(a + b)                          # 2
        total = s.sum()                            # 1
        s.reshape(16)                              # 0: a view
        s.T.reshape(16)                            # 1: a copy
        s @ a                                      # 1 (cuBLAS)
        idx = xp.asarray(np.array([0, 2]))         # htod 1
        s[idx]                                     # 1: take
        s[1:3, ::2]                                # 0
        s[s > 1]                                   # compare 1, mask: 1 sync + 2
        xp.concatenate([a, b, s])                  # 3 copies
        a.astype(np.float64)                       # 1
        a.astype(np.float32, copy=False)           # 0
        float(total)                               # 1 sync
        a[0] = 5.0                                 # 1 fill
    assert (c.kernels, c.syncs, c.htod, c.dtoh, c.peer) == (15, 2, 2, 2, 0)
    assert 'test_sim_device.py' in c.report() and c.by_name[('kernel', 'concatenate')] == 3


def test_counts_syncs_transfers_and_fused_regions():
    a = dev(np.ones(4))
    with counting() as c:
        a.get()
        a.tolist()
        bool(a[0])
        repr(a)
        int(a.sum())
        xp.cuda.Device().synchronize()
    assert (c.syncs, c.dtoh, c.kernels) == (6, 5, 1)
    with counting() as c:
        with simulated.one_kernel('fused'):
            (a * 2 + 1).sum()
        f = xp.fuse()(lambda x, y: x * y + 1)
        f(a, a)
        with xp.cuda.Device(1):
            xp.asarray(a)                          # a peer copy
    assert (c.kernels, c.peer) == (2, 1)
    with simulated.allow_synchronize(False):
        a + 1
        with pytest.raises(simulated.DeviceSynchronized):
            float(a[0])


def test_counts_per_device_and_reset():
    simulated.reset_counts()
    with xp.cuda.Device(2):
        dev([1.0]) * 2
    assert simulated.launch_count(2) == 1 and simulated.transfer_count('htod', 2) == 1
    assert simulated.launch_count(0) == 0 and simulated.launch_count() == 1
    simulated.reset_counts()
    assert simulated.launch_count() == simulated.sync_count() == 0


def test_ndarray_level_counts():
    """An xpnet-level sequence: creation is 1 kernel, a scalar operand travels as a kernel
    argument, reading a value back is a sync."""
    x = nd.ones((8, 8), ctx=sim(1))
    with counting() as c:
        y = (x * 2.0 + 1.0).sum()
        value = y.asscalar()
    assert value == 192.0
    assert (c.kernels, c.syncs, c.htod) == (3, 1, 0)


def test_contexts_switch_the_simulated_device_like_gpus_do():
    assert Context('sim', 1).use().id == 1
    with Context('sim', 1).use():
        assert xp.cuda.runtime.getDevice() == 1
        assert nd.zeros(2, ctx=sim(1)).context == sim(1)
    assert xpnet.cpu(0).use() is not None


# ---- deterministic scatter-add ---------------------------------------------------------------

@pytest.mark.parametrize('layout', ['rows', 'flat', 'columns'])
def test_deterministic_scatter_add_matches_atomics_and_ignores_order(layout):
    from xpnet.backend import scatter_add, set_deterministic
    rng = np.random.default_rng(0)
    idx = rng.integers(0, 5, 40)
    vals = (rng.standard_normal((40, 3)) * 10.0 ** rng.integers(-3, 4, (40, 1))).astype(
        np.float32)

    def run(order, deterministic):
        i, v = idx[order], vals[order]
        if layout == 'flat':
            shape, key, v = (5,), xp.asarray(i), xp.asarray(v[:, 0])
        elif layout == 'rows':
            shape, key, v = (5, 3), xp.asarray(i), xp.asarray(v)
        else:                                            # a slice and an index array
            shape, key, v = (3, 5), (slice(None), xp.asarray(i)), xp.asarray(v.T.copy())
        prev = set_deterministic(deterministic)
        try:
            out = xp.zeros(shape, dtype=np.float32)
            with counting() as c:
                scatter_add(xp, out, key, v)
        finally:
            set_deterministic(prev)
        return out.get(), c.kernels

    same = np.arange(40)
    atomic, k_atomic = run(same, False)
    exact, k_exact = run(same, True)
    assert k_atomic == 1 and k_exact > 1           # cupy.add.at vs sort + segment sums
    np.testing.assert_allclose(exact, atomic, rtol=1e-5, atol=1e-5)
    for _ in range(3):                             # bit for bit, whatever the input order
        np.testing.assert_array_equal(run(rng.permutation(40), True)[0], exact)


def test_deprecated_cupy_calls_warn_as_on_a_gpu():
    t = xp.zeros(3, dtype=np.float32)
    with pytest.warns(DeprecationWarning, match='cupy.add.at'):
        simulated.cupyx.scatter_add(t, xp.asarray(np.array([0, 0])), 1.0)
    np.testing.assert_array_equal(t.get(), [2, 0, 0])


def test_deterministic_mode_from_the_environment():
    import subprocess
    import sys
    code = 'import xpnet.backend as b; print(b.is_deterministic())'
    env = dict(os.environ, XPNET_DETERMINISTIC='1')
    out = subprocess.run([sys.executable, '-c', code], env=env, capture_output=True,
                         text=True, check=True).stdout
    assert out.strip() == 'True'
    assert not xpnet.backend.is_deterministic()
