"""The autograd engine's leaf-ready hooks, which let data-parallel training reduce a
gradient while the backward pass goes on (autograd.register_ready_hook)."""
import numpy as np
import pytest

import xpnet
from xpnet import autograd
from xpnet import layers as nn
from test_hostpool import pool  # noqa: F401  (fixture: background weight gradients)


@pytest.fixture
def hooked():
    """Register recording hooks; every hook is removed after the test."""
    handles, calls = [], []

    def register(arrays):
        def record(leaf):
            calls.append((names[id(leaf)], leaf.grad.asnumpy().copy(),
                          [a._fresh_grad for a in arrays]))
        names = {id(a): i for i, a in enumerate(arrays)}
        handles.extend(autograd.register_ready_hook(a, record) for a in arrays)
        return calls
    yield register
    for h in handles:
        h.remove()


def _mlp(ctx=None):
    xpnet.random.seed(0)
    net = nn.Sequential()
    net.add(nn.Dense(5, activation='tanh', in_units=4), nn.Dense(5, activation='tanh', in_units=5),
            nn.Dense(2, in_units=5))
    net.initialize(ctx=ctx)
    return net


def _leaves(net):
    return [p.data() for p in net.collect_params().values()]


def test_hooks_fire_during_the_pass_once_each_gradient_is_final(hooked, ctx):
    net = _mlp(ctx)
    leaves = _leaves(net)            # 0.weight 0.bias 1.weight 1.bias 2.weight 2.bias
    calls = hooked(leaves)
    x = xpnet.nd.array(np.random.default_rng(0).normal(size=(3, 4)), ctx=ctx)
    with autograd.record():
        loss = net(x).sum()
    loss.backward()
    assert sorted(i for i, _, _ in calls) == list(range(6))          # once each
    order = [i for i, _, _ in calls]
    assert order.index(4) < order.index(2) < order.index(0)          # last layer first
    first = calls[0][2]
    assert first[4] or first[5]                                      # written before its hook
    assert not first[0] and not first[1]   # the first layer's are not final yet: mid-pass
    for i, grad, _ in calls:
        np.testing.assert_array_equal(grad, leaves[i].grad.asnumpy())


def test_a_leaf_used_twice_fires_after_its_last_use(hooked):
    dense = nn.Dense(3, in_units=3)
    dense.initialize()
    calls = hooked([dense.weight.data()])
    x = xpnet.nd.array(np.eye(3))
    with autograd.record():
        loss = (dense(dense(x)) ** 2).sum()
    loss.backward()
    assert len(calls) == 1
    np.testing.assert_array_equal(calls[0][1], dense.weight.grad().asnumpy())


def test_add_retain_graph_unused_leaves_and_remove(hooked):
    net = _mlp()
    for p in net.collect_params().values():
        p.grad_req = 'add'
    unused = xpnet.nd.array([1.0])
    unused.attach_grad()
    leaves = _leaves(net)
    calls = hooked(leaves + [unused])
    x = xpnet.nd.array(np.ones((2, 4)))
    with autograd.record():
        loss = net(x).sum()
    loss.backward(retain_graph=True)
    loss.backward()
    assert len(calls) == 12 and all(i != 6 for i, _, _ in calls)    # no gradient: no call
    last = [grad for i, grad, _ in calls if i == 0][-1]
    np.testing.assert_array_equal(last, leaves[0].grad.asnumpy())     # the accumulated sum
    # a new hook replaces the old one; removing it leaves leaves[0] without a hook
    handle = autograd.register_ready_hook(leaves[0], lambda leaf: calls.append('again'))
    handle.remove()
    with autograd.record():
        loss = net(x).sum()
    loss.backward()
    assert 'again' not in calls and sorted(i for i, _, _ in calls[12:]) == [1, 2, 3, 4, 5]


def test_background_weight_gradients_fire_when_their_job_is_done(hooked, pool):  # noqa: F811
    xpnet.random.seed(1)
    net = nn.Sequential()
    net.add(nn.Conv2D(4, 3, in_channels=2), nn.Activation('relu'),
            nn.Conv2D(3, 3, in_channels=4), nn.GlobalAvgPool2D())
    net.initialize()
    leaves = _leaves(net)
    calls = hooked(leaves)
    x = xpnet.nd.array(np.random.default_rng(1).normal(size=(4, 2, 9, 9)))
    for _ in range(3):
        calls.clear()
        with autograd.record():
            loss = net(x).sum()
        loss.backward()
        # the order the gradients became final (a property of the graph, not of timing)
        assert [i for i, _, _ in calls] == [2, 3, 0, 1]
        for i, grad, _ in calls:
            np.testing.assert_array_equal(grad, leaves[i].grad.asnumpy())
