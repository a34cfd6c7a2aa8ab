"""A small CNN (Conv2D, BatchNorm, MaxPool, Dense, plus a transposed conv and global pooling)
trains on every backend: the loss goes down, and the simulated device (CuPy's host/device
rules) computes the same numbers as the CPU."""
import numpy as np
import pytest

import xpnet
from xpnet import autograd, nd, ops
from xpnet import layers as nn
from conftest import make_ctx


def build():
    net = nn.HybridSequential()
    net.add(nn.Conv2D(8, 3, padding=1), nn.BatchNorm(), nn.Activation('relu'),
            nn.MaxPool2D(2),
            nn.Conv2D(8, 3, padding=1, groups=2, layout='NCHW'), nn.BatchNorm(),
            nn.Activation('relu'),
            nn.Conv2DTranspose(4, 2, strides=2), nn.AvgPool2D(3, 2, 1, count_include_pad=False),
            nn.GlobalMaxPool2D(), nn.Flatten(), nn.Dense(3))
    return net


def data():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((12, 2, 8, 8)).astype(np.float32)
    y = rng.integers(0, 3, 12)
    x[np.arange(12), y % 2, 2:5, 2:5] += 2.0 * (1 + y[:, None, None])  # learnable signal
    return x, y.astype(np.float32)


def train(ctx, steps=10, lr=0.1):
    xpnet.random.seed(0)
    net = build()
    net.initialize(init=xpnet.init.Xavier(), ctx=ctx)
    xh, yh = data()
    x, y = nd.array(xh, ctx=ctx), nd.array(yh, ctx=ctx)
    params = [p for p in net.collect_params().values() if p.grad_req != 'null']
    losses = []
    for _ in range(steps):
        with autograd.record():
            loss = ops.softmax_cross_entropy(net(x), y).mean()
        loss.backward()
        for p in params:
            w = p.data(ctx)
            w -= lr * p.grad(ctx)          # plain SGD, in place, outside the graph
        losses.append(loss.asscalar())
    with autograd.predict_mode():
        pred = net(x).asnumpy()
    return np.array(losses), pred, {k: p.data(ctx).asnumpy()
                                    for k, p in net.collect_params().items()}


def test_cnn_trains(ctx):
    losses, pred, _ = train(ctx)
    assert np.isfinite(losses).all()
    assert losses[-1] < 0.75 * losses[0], losses
    assert (np.diff(losses) < 0).all(), losses          # plain SGD on one batch: monotone
    assert pred.shape == (12, 3)


def test_sim_matches_cpu():
    cpu = train(make_ctx('cpu'), steps=4)
    sim = train(make_ctx('sim'), steps=4)
    np.testing.assert_allclose(sim[0], cpu[0], rtol=1e-6)
    np.testing.assert_allclose(sim[1], cpu[1], rtol=1e-5, atol=1e-6)
    assert sim[2].keys() == cpu[2].keys()
    for k in cpu[2]:
        np.testing.assert_allclose(sim[2][k], cpu[2][k], rtol=1e-5, atol=1e-6, err_msg=k)


@pytest.mark.parametrize('layout', ['NHWC'])
def test_channels_last_cnn_matches_channels_first(layout, ctx):
    """The same network in NHWC, fed transposed data and weights, gives the same outputs."""
    rng = np.random.default_rng(1)
    xh = rng.standard_normal((3, 5, 6, 2)).astype(np.float32)       # NHWC
    first = nn.HybridSequential()
    first.add(nn.Conv2D(4, 3, padding=1), nn.MaxPool2D(2, ceil_mode=True),
              nn.Conv2DTranspose(2, 3, strides=2, output_padding=1))
    last = nn.HybridSequential()
    last.add(nn.Conv2D(4, 3, padding=1, layout=layout), nn.MaxPool2D(2, ceil_mode=True,
                                                                    layout=layout),
             nn.Conv2DTranspose(2, 3, strides=2, output_padding=1, layout=layout))
    first.initialize(ctx=ctx)
    last.initialize(ctx=ctx)
    y1 = first(nd.array(xh.transpose(0, 3, 1, 2), ctx=ctx))
    last(nd.array(xh, ctx=ctx))
    for (k, p1), p2 in zip(first.collect_params().items(), last.collect_params().values()):
        v = p1.data(ctx).asnumpy()
        p2.set_data(v.transpose(0, 2, 3, 1) if v.ndim == 4 else v)
    y2 = last(nd.array(xh, ctx=ctx))
    np.testing.assert_allclose(y2.asnumpy().transpose(0, 3, 1, 2), y1.asnumpy(), rtol=1e-5,
                               atol=1e-5)


# ---- the BatchNorm training path shared with the CNN (ops/normalization.py) ---------------

@pytest.mark.parametrize('shape,axis,channels_last_memory', [
    ((4, 3, 5, 6), 1, False), ((4, 3, 5, 6), 1, True), ((6, 5), 1, False),
    ((2, 4, 3, 5), 3, False), ((2, 3, 4, 2, 3), 1, True)])
@pytest.mark.parametrize('fix_gamma,center', [(False, True), (True, False)])
def test_batch_norm_training_matches_normalize(shape, axis, channels_last_memory, fix_gamma,
                                               center, ctx):
    from gradcheck import check_grad
    rng = np.random.default_rng(0)
    host = rng.standard_normal(shape) * 2 + 1
    C = shape[axis]
    gamma, beta = rng.standard_normal(C), rng.standard_normal(C)

    to_last = tuple(i for i in range(len(shape)) if i != axis) + (axis,)

    def make_x(a):
        if channels_last_memory:       # the memory layout convolution outputs have
            moved = ops.transpose(a, to_last)
            moved = moved.reshape(-1).reshape(moved.shape)     # a channels-last copy
            out = ops.transpose(moved, tuple(int(i) for i in np.argsort(to_last)))
            assert out._data.base is not None and not out._data.flags.c_contiguous
            return out
        return a

    def bn(x, g, b):
        rm, rv = nd.zeros(C, ctx=ctx, dtype=x.dtype), nd.ones(C, ctx=ctx, dtype=x.dtype)
        return ops.batch_norm(make_x(x), g, b, rm, rv, axis=axis, fix_gamma=fix_gamma,
                              center=center, training=True)

    def ref(x, g, b):
        pshape = [1] * len(shape)
        pshape[axis] = C
        red = tuple(i for i in range(len(shape)) if i != axis)
        return ops.normalize(x, g, b, red, tuple(pshape), 1e-5, center=center,
                             scale=not fix_gamma)[0]

    args = [xpnet.array(a, ctx=ctx) for a in (host, gamma, beta)]
    np.testing.assert_allclose(bn(*args).asnumpy(), ref(*args).asnumpy(), rtol=1e-5,
                               atol=1e-5)
    check_grad(bn, [host, gamma, beta], ctx=ctx)


def test_batch_norm_running_statistics_use_biased_variance():
    x = np.random.default_rng(1).standard_normal((8, 3, 2, 2)).astype(np.float32)
    rm, rv = nd.zeros(3), nd.ones(3)
    with autograd.train_mode():
        ops.batch_norm(nd.array(x), nd.ones(3), nd.zeros(3), rm, rv, momentum=0.9)
    np.testing.assert_allclose(rm.asnumpy(), 0.1 * x.mean(axis=(0, 2, 3)), rtol=1e-5,
                               atol=1e-7)
    np.testing.assert_allclose(rv.asnumpy(), 0.9 + 0.1 * x.var(axis=(0, 2, 3)), rtol=1e-5)
