"""The core models on every device, including the simulated one whose arrays refuse to mix
with host NumPy arrays the way CuPy's do: an MLP trained with Trainer (SGD momentum and
Adam), save/load round trips, multi-device replicas, and CPU/simulated agreement."""
import contextlib

import numpy as np
import pytest

from conftest import assert_placed

import xpnet
from xpnet import autograd, nd
from xpnet import layers as nn


def mlp(dropout=0.1):
    net = nn.HybridSequential()
    net.add(nn.Dense(32, activation='relu'), nn.BatchNorm(), nn.Dropout(dropout),
            nn.Dense(16, activation='tanh'), nn.Dense(3))
    return net


def blobs(n=120, seed=0):
    rng = np.random.default_rng(seed)
    centers = np.array([[2, 0, 0, 1], [0, 2, 0, -1], [0, 0, 2, 0]], dtype=np.float32)
    y = rng.integers(0, 3, n)
    x = centers[y] + rng.normal(0, 0.5, (n, 4)).astype(np.float32)
    return x, y


def train(ctx, optimizer, opt_params, steps=30, seed=0, dropout=0.1):
    xpnet.random.seed(seed)
    net = mlp(dropout)
    net.initialize(init='xavier', ctx=ctx)
    trainer = xpnet.Trainer(net.collect_params(), optimizer, opt_params)
    loss_fn = xpnet.loss.SoftmaxCrossEntropyLoss()
    x, y = blobs()
    xd, yd = xpnet.array(x, ctx=ctx), xpnet.array(y, ctx=ctx)
    losses = []
    for _ in range(steps):
        with autograd.record():
            loss = loss_fn(net(xd), yd)
        loss.backward()
        trainer.step(len(x))
        losses.append(float(loss.mean()))
    acc = float((net(xd).argmax(axis=1) == yd.astype('float32')).mean())
    return net, losses, acc


@pytest.mark.parametrize('optimizer,params', [('sgd', {'learning_rate': 0.1, 'momentum': 0.9}),
                                              ('adam', {'learning_rate': 0.01})])
def test_mlp_trains_on_every_device(ctx, optimizer, params):
    net, losses, acc = train(ctx, optimizer, params)
    assert losses[-1] < 0.5 * losses[0]
    assert acc > 0.9
    for p in net.collect_params().values():
        assert p.data(ctx).context == ctx


@pytest.mark.parametrize('fused', [True, False])
def test_simulated_device_matches_cpu(fused):
    # Without dropout: a device draws its masks with Philox on the device, the CPU with
    # PCG64 on the host (xpnet.random). The fused kernels (on by default) sum in another
    # order than NumPy, so they agree to rounding; the generic device path exactly.
    from xpnet.backend import kernels, sim
    args = ('sgd', {'learning_rate': 0.1, 'momentum': 0.9})
    net_c, losses_c, _ = train(xpnet.cpu(), *args, steps=5, dropout=0)
    with (contextlib.nullcontext() if fused else kernels.disabled()):
        net_s, losses_s, _ = train(sim(), *args, steps=5, dropout=0)
    rtol, atol = (2e-5, 2e-6) if fused else (1e-6, 1e-7)
    np.testing.assert_allclose(losses_s, losses_c, rtol=rtol)
    for (k, pc), ps in zip(net_c.collect_params().items(), net_s.collect_params().values()):
        np.testing.assert_allclose(ps.data().asnumpy(), pc.data().asnumpy(), rtol=rtol,
                                   atol=atol, err_msg=k)


def test_save_load_across_devices(ctx, tmp_path):
    net, _, _ = train(ctx, 'sgd', {'learning_rate': 0.1}, steps=3)
    x = nd.random.uniform(shape=(5, 4), ctx=ctx)
    y = net(x).asnumpy()
    path = str(tmp_path / 'mlp.params')
    net.save_parameters(path)
    for target in (ctx, xpnet.cpu()):
        other = mlp()
        other.load_parameters(path, ctx=target)
        assert_placed(other, [target])
        out = other(x.as_in_context(target)).asnumpy()
        if target == ctx:         # the same device computes the same numbers
            np.testing.assert_array_equal(out, y)
        else:                     # another device's kernels round float32 differently
            np.testing.assert_allclose(out, y, rtol=1e-5, atol=1e-6)


def test_trainer_states_roundtrip_on_device(ctx, tmp_path):
    net, _, _ = train(ctx, 'adam', {'learning_rate': 0.01}, steps=2)
    trainer = xpnet.Trainer(net.collect_params(), 'adam', {'learning_rate': 0.01})
    x, y = blobs(16)
    xd, yd = xpnet.array(x, ctx=ctx), xpnet.array(y, ctx=ctx)
    loss_fn = xpnet.loss.SoftmaxCrossEntropyLoss()

    def step():
        with autograd.record():
            loss_fn(net(xd), yd).backward()
        trainer.step(16)
    step()
    net.save_parameters(str(tmp_path / 'p.params'))
    trainer.save_states(str(tmp_path / 't.states'))
    xpnet.random.seed(1)
    step()
    expected = {k: p.data(ctx).asnumpy() for k, p in net.collect_params().items()}
    net.load_parameters(str(tmp_path / 'p.params'), ctx=ctx)
    trainer.load_states(str(tmp_path / 't.states'))
    xpnet.random.seed(1)
    step()
    for k, p in net.collect_params().items():
        np.testing.assert_array_equal(p.data(ctx).asnumpy(), expected[k], err_msg=k)


def test_two_devices_give_one_model(ctx_list):
    """Data-parallel on two devices: summed gradients, identical replicas, and the same
    result as one device with the whole batch (no BatchNorm/Dropout here: exact)."""
    ctxs = ctx_list
    x, y = blobs(64)

    def make():
        xpnet.random.seed(3)
        net = nn.Sequential()
        net.add(nn.Dense(16, activation='relu'), nn.Dense(3))
        return net
    single, multi = make(), make()
    single.initialize(init='xavier')
    xpnet.random.seed(3)
    multi.initialize(init='xavier', ctx=ctxs)
    single(nd.ones((1, 4)))
    multi(nd.ones((1, 4), ctx=ctxs[0]))
    multi.load_dict({k: p.data() for k, p in single.collect_params().items()}, ctx=ctxs)
    loss_fn = xpnet.loss.SoftmaxCrossEntropyLoss()
    t1 = xpnet.Trainer(single.collect_params(), 'sgd', {'learning_rate': 0.5, 'momentum': 0.9})
    t2 = xpnet.Trainer(multi.collect_params(), 'sgd', {'learning_rate': 0.5, 'momentum': 0.9})
    for _ in range(3):
        with autograd.record():
            loss_fn(single(nd.array(x)), nd.array(y)).backward()
        t1.step(64)
        xs = xpnet.utils.split_and_load(x, ctxs)
        ys = xpnet.utils.split_and_load(y, ctxs)
        with autograd.record():
            losses = [loss_fn(multi(a), b) for a, b in zip(xs, ys)]
        autograd.backward(losses)
        t2.step(64)
    for k, p in multi.collect_params().items():
        r0, r1 = (d.asnumpy() for d in p.list_data())
        np.testing.assert_array_equal(r0, r1, err_msg=k)
        np.testing.assert_allclose(r0, single.collect_params()[k].data().asnumpy(), rtol=1e-5,
                                   atol=1e-6, err_msg=k)
    assert_placed(multi, ctxs)
