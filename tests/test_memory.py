"""The host memory pool (xpnet/backend/memory.py): arrays are ordinary NumPy arrays, a
block is reused only once no array refers to it, and the pool keeps a bounded amount."""
import gc
import threading

import numpy as np
import pytest

from xpnet import autograd, nd, ops
from xpnet.backend import memory


@pytest.fixture
def pool():
    return memory._Pool(min_bytes=1024, max_bytes=1 << 24)


def test_arrays_have_the_shape_dtype_and_alignment_asked_for(pool):
    a = pool.empty(np, (33, 17), np.float32)
    assert a.shape == (33, 17) and a.dtype == np.float32 and a.flags.c_contiguous
    assert a.ctypes.data % 64 == 0 and a.flags.writeable
    z = pool.zeros(np, 5000, np.float64)
    assert z.shape == (5000,) and not z.any()


def test_small_and_device_arrays_are_not_pooled(pool):
    assert pool.empty(np, (4,), np.float32).base is None          # below min_bytes

    class FakeXp:
        @staticmethod
        def empty(shape, dtype):
            return ('device', shape)
    assert pool.empty(FakeXp, (1000,), np.float32) == ('device', (1000,))
    assert pool.stats()['blocks'] == 0


def test_a_block_is_reused_only_once_no_view_of_it_is_left(pool):
    a = pool.empty(np, (1000,), np.float32)
    address = a.ctypes.data                      # (a reference to a.base would hold it)
    view = a.reshape(10, 100).T[2:]              # a view of a view
    del a
    b = pool.empty(np, (1000,), np.float32)      # the view keeps the first block busy
    assert b.ctypes.data != address and not np.shares_memory(b, view)
    del view
    c = pool.empty(np, (990,), np.float32)       # same size class: the free block
    assert c.ctypes.data == address
    assert pool.stats()['blocks'] == 2


def test_a_recorded_graph_keeps_its_buffers_until_it_is_dropped(monkeypatch):
    """Pooled columns saved for the backward pass stay out of the pool while the graph
    lives (a forward without backward), and are free once it is dropped."""
    monkeypatch.setattr(memory.scratch, 'min_bytes', 1)

    def in_use():
        stats = memory.scratch.stats()
        return stats['blocks'] - stats['free_blocks']
    gc.collect()
    before = in_use()
    x = nd.array(np.random.default_rng(0).standard_normal((2, 3, 7, 7)))
    w = nd.array(np.random.default_rng(1).standard_normal((4, 3, 3, 3)))
    w.attach_grad()
    with autograd.record():
        y = ops.convolution(x, w, pad=1)
    assert in_use() > before
    del y
    gc.collect()
    assert in_use() == before


def test_free_blocks_beyond_max_bytes_are_dropped():
    pool = memory._Pool(min_bytes=1, max_bytes=100_000)
    for n in range(10):                          # ten sizes, each dropped at once
        pool.empty(np, (4096 * (n + 1),), np.uint8)
    assert pool.stats()['free_bytes'] <= 100_000 + 40960
    held = [pool.empty(np, (50_000,), np.uint8) for _ in range(4)]
    assert pool.stats()['bytes'] >= 200_000      # blocks in use are never dropped
    pool.clear()
    assert pool.stats()['blocks'] == len(held)


def test_concurrent_arrays_never_share_memory(pool):
    errors = []

    def worker(k):
        try:
            for i in range(200):
                a = pool.empty(np, (2000 + 7 * (i % 3),), np.float32)
                a.fill(k)
                b = pool.empty(np, (1500,), np.float32)
                b.fill(-k)
                if not ((a == k).all() and (b == -k).all()):
                    errors.append(k)
        except Exception as err:                 # pragma: no cover - reported below
            errors.append(err)
    threads = [threading.Thread(target=worker, args=(k,)) for k in range(1, 5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_contiguous_copies_only_what_is_not_contiguous(pool):
    a = np.arange(6000, dtype=np.float32).reshape(60, 100)
    assert pool.contiguous(np, a) is a
    t = pool.contiguous(np, a.T)
    assert t.flags.c_contiguous and np.array_equal(t, a.T) and t.base is not None


def test_owns_memory_tells_a_sole_pool_view_from_a_shared_one():
    a = memory.scratch.empty(np, (512, 1024), np.float32)        # 2 MB: pooled
    assert not a.flags.owndata
    assert memory.owns_memory(a)                # (no reference to a.base may be held here)
    b = a[:10]
    assert not memory.owns_memory(a) and not memory.owns_memory(b)
    del b
    assert memory.owns_memory(a)
    plain = np.ones((3, 4))
    assert memory.owns_memory(plain) and not memory.owns_memory(plain[1:])
    # a view of an array that is not a pool block never counts as owning
    big = np.ones(1 << 20, np.uint8)
    assert not memory.owns_memory(big[:10])


def test_a_pooled_weight_gradient_is_bound_not_copied_and_never_aliased():
    # Dense 512 -> 512 on a batch of 512: every product output is a pooled block; the weight
    # gradient is bound to the parameter (no copy), and nothing else views its memory
    from xpnet import layers as nn
    net = nn.Dense(512, in_units=512)
    net.initialize()
    x = nd.array(np.random.default_rng(0).standard_normal((512, 512)).astype(np.float32))
    grads = []
    for _ in range(3):
        with autograd.record():
            loss = (net(x) ** 2).sum()
        loss.backward()
        g = net.weight.grad()._data
        assert not g.flags.owndata                  # a pool block, bound without a copy
        assert memory.owns_memory(g)
        grads.append(g.copy())
    # the bound gradient is not overwritten by later steps' temporaries
    with autograd.record():
        y = net(x)
    y2 = y * 2
    assert np.array_equal(net.weight.grad()._data, grads[-1])
    del y2


@pytest.mark.parametrize('value, expect', [('0', 'off 0'), ('16', 'on 16777216'), ('', 'on 1073741824')])
def test_pool_size_comes_from_the_environment(value, expect):
    import os
    import subprocess
    import sys
    code = ('import numpy as np; from xpnet.backend.memory import scratch; '
            'a = scratch.empty(np, (1 << 20,), np.float32); '
            'print("off" if a.flags.owndata else "on", scratch.max_bytes)')
    env = dict(os.environ, XPNET_HOST_POOL_MB=value)
    out = subprocess.run([sys.executable, '-c', code], env=env, capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == expect


def test_a_bad_pool_size_is_refused_naming_the_variable():
    import os
    import subprocess
    import sys
    env = dict(os.environ, XPNET_HOST_POOL_MB='lots')
    res = subprocess.run([sys.executable, '-c', 'import xpnet'], env=env, capture_output=True,
                         text=True)
    assert res.returncode != 0 and 'XPNET_HOST_POOL_MB' in res.stderr
