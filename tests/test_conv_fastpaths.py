"""The fast paths of the convolution core and BatchNorm, against the generic ones.

Winograd F(4x4, 3x3) (``xpnet/ops/winograd.py``), the channels-first unfolding for inputs
with few channels, the one-pass BatchNorm statistics, the widened per-channel helpers
(``xpnet/ops/_rows.py``) and the bool arg-max of 2-wide max pooling. Each path is compared
with the generic computation (and MXNet's numbers where the oracle has an eligible case)
and gradient-checked in float64.
"""
import json

import numpy as np
import pytest

import xpnet
from xpnet import autograd, nd, ops
from xpnet.backend import to_host
from xpnet import layers as nn
from xpnet.ops import winograd
from xpnet.ops._rows import add_channel_vector, channel_sum, fold, tile, widening
from xpnet.ops.conv import _unfold_channels_first
from conftest import oracle
from gradcheck import check_grad


@pytest.fixture
def force_winograd():
    """Set winograd.WINOGRAD['force'] for one test."""
    saved = winograd.WINOGRAD['force']

    def set_(value):
        winograd.WINOGRAD['force'] = value
    yield set_
    winograd.WINOGRAD['force'] = saved


def conv_both(force_winograd, x, w, b, pad, layout, ctx, dtype=np.float32):
    """(output, grads) of one convolution via Winograd and via im2col + GEMM."""
    results = []
    g = None
    for force in (True, False):
        force_winograd(force)
        xa, wa = nd.array(x, ctx=ctx, dtype=dtype), nd.array(w, ctx=ctx, dtype=dtype)
        ba = None if b is None else nd.array(b, ctx=ctx, dtype=dtype)
        for a in (xa, wa) + (() if ba is None else (ba,)):
            a.attach_grad()
        with autograd.record():
            y = ops.convolution(xa, wa, ba, stride=1, pad=pad, layout=layout)
        if g is None:
            g = np.random.default_rng(1).standard_normal(y.shape)
        y.backward(nd.array(g, ctx=ctx, dtype=dtype))
        results.append([y.asnumpy(), xa.grad.asnumpy(), wa.grad.asnumpy()] +
                       ([] if ba is None else [ba.grad.asnumpy()]))
    return results


@pytest.mark.parametrize('shape,channels,pad,layout,bias', [
    ((2, 3, 8, 8), 4, 1, 'NCHW', True),          # tiles exactly cover the output
    ((2, 5, 7, 9), 3, 1, 'NCHW', False),         # output not a multiple of 4
    ((1, 2, 6, 5), 2, (0, 2), 'NCHW', True),     # asymmetric padding, pad 0
    ((2, 6, 5, 3), 4, (2, 1), 'NHWC', True),     # channels-last, pad 2
    ((1, 2, 1, 1), 3, 2, 'NCHW', True),          # 1x1 image: every tile mostly padding
])
def test_winograd_matches_direct(shape, channels, pad, layout, bias, force_winograd, ctx):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape)
    C = shape[-1] if layout == 'NHWC' else shape[1]
    w = rng.standard_normal((channels, 3, 3, C) if layout == 'NHWC' else (channels, C, 3, 3))
    b = rng.standard_normal(channels) if bias else None
    wino, direct = conv_both(force_winograd, x, w, b, pad, layout, ctx, np.float64)
    for a, d, what in zip(wino, direct, ['output', 'input grad', 'weight grad', 'bias grad']):
        np.testing.assert_allclose(a, d, rtol=1e-9, atol=1e-9, err_msg=what)


def test_winograd_float32_error_is_small(force_winograd):
    """The size where it is used (CIFAR's 32->32 layer, 288-term sums): within 1e-5 of the
    largest output against a float64 reference (MXNet parity needs 1e-4)."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 32, 16, 16))
    w = rng.standard_normal((32, 32, 3, 3)) * 0.1
    force_winograd(False)
    ref = ops.convolution(nd.array(x, dtype=np.float64), nd.array(w, dtype=np.float64),
                          pad=1).asnumpy()
    force_winograd(True)
    y = ops.convolution(nd.array(x), nd.array(w), pad=1).asnumpy()
    assert y.dtype == np.float32
    assert np.abs(y - ref).max() < 1e-5 * np.abs(ref).max()


@pytest.mark.parametrize('name', ['c2d_basic', 'c2d_same_narrow'])
def test_winograd_mxnet_parity(name, force_winograd, ctx):
    data = oracle('conv.npz')
    args = json.loads(str(data[name + ':args']))
    a = {k.split(':')[1]: v for k, v in data.items() if k.startswith(name + ':')}
    force_winograd(True)
    layer = nn.Conv2D(**args['kwargs'])
    layer.initialize(ctx=ctx)
    layer(xpnet.array(a['x'], ctx=ctx))
    layer.weight.set_data(a['weight'])
    layer.bias.set_data(a['bias'])
    x = xpnet.array(a['x'], ctx=ctx)
    x.attach_grad()
    with autograd.record():
        y = layer(x)
    y.backward(xpnet.array(a['dy'], ctx=ctx))
    for got, want in [(y, 'y'), (x.grad, 'gx'), (layer.weight.grad(ctx), 'gweight'),
                      (layer.bias.grad(ctx), 'gbias')]:
        np.testing.assert_allclose(got.asnumpy(), a[want], rtol=1e-4, atol=1e-5,
                                   err_msg=f'{name}: {want}')


@pytest.mark.parametrize('layout', ['NCHW', 'NHWC'])
def test_winograd_gradcheck(layout, force_winograd, ctx):
    force_winograd(True)
    rng = np.random.default_rng(0)
    shape = (2, 2, 5, 6) if layout == 'NCHW' else (2, 5, 6, 2)
    w = rng.standard_normal((3, 2, 3, 3) if layout == 'NCHW' else (3, 3, 3, 2))
    check_grad(lambda x, w, b: ops.convolution(x, w, b, pad=(1, 2), layout=layout),
               [rng.standard_normal(shape), w, rng.standard_normal(3)], ctx=ctx)


def test_winograd_selection(force_winograd):
    force_winograd(None)
    use = winograd.use_winograd
    assert use(np, (3, 3), (1, 1), (1, 1), 1, 32, 32, np.float32)
    assert not use(np, (3, 3), (1, 1), (1, 1), 1, 3, 32, np.float32)       # few channels
    assert not use(np, (3, 3), (2, 2), (1, 1), 1, 32, 32, np.float32)      # strided
    assert not use(np, (3, 3), (1, 1), (2, 2), 1, 32, 32, np.float32)      # dilated
    assert not use(np, (3, 3), (1, 1), (1, 1), 2, 32, 32, np.float32)      # grouped
    assert not use(np, (3, 3, 3), (1, 1, 1), (1, 1, 1), 1, 32, 32, np.float32)
    assert not use(np, (5, 5), (1, 1), (1, 1), 1, 32, 32, np.float32)
    assert not use(np, (3, 3), (1, 1), (1, 1), 1, 32, 32, np.int32)


def test_winograd_layer_without_input_gradient(force_winograd):
    """The first layer of a net: no input gradient is computed, the weight's still is."""
    force_winograd(True)
    rng = np.random.default_rng(0)
    x = nd.array(rng.standard_normal((2, 3, 8, 8)))
    w = nd.array(rng.standard_normal((4, 3, 3, 3)))
    w.attach_grad()
    with autograd.record():
        y = ops.convolution(x, w, None, pad=1)
    y.backward()
    force_winograd(False)
    w2 = nd.array(w.asnumpy())
    w2.attach_grad()
    with autograd.record():
        y2 = ops.convolution(x, w2, None, pad=1)
    y2.backward()
    np.testing.assert_allclose(w.grad.asnumpy(), w2.grad.asnumpy(), rtol=1e-4, atol=1e-4)


def test_winograd_input_gradient_only(force_winograd):
    """A frozen weight: only the input gradient (the transformed input is not kept)."""
    rng = np.random.default_rng(0)
    xh, wh = rng.standard_normal((2, 16, 6, 6)), rng.standard_normal((16, 16, 3, 3))
    grads = []
    for force in (True, False):
        force_winograd(force)
        x = nd.array(xh)
        x.attach_grad()
        with autograd.record():
            y = ops.convolution(x, nd.array(wh), None, pad=1)
        y.backward()
        grads.append(x.grad.asnumpy())
    np.testing.assert_allclose(grads[0], grads[1], rtol=1e-4, atol=1e-4)


# ---- channels-first unfolding (few input channels, channels-first memory) ----------------

@pytest.mark.parametrize('shape,kernel,stride,pad,dilate', [
    ((2, 1, 9, 20), (5, 5), 1, 0, 1),          # LeNet's first layer, smaller
    ((2, 3, 8, 24), (3, 3), 1, 1, 1),          # CIFAR's first layer, smaller
    ((1, 2, 7, 30), (3, 2), (2, 1), (1, 0), (1, 2)),
    ((2, 3, 40), (3,), 2, 1, 1),               # 1-D
])
def test_channels_first_unfold_matches_channels_last(shape, kernel, stride, pad, dilate, ctx):
    rng = np.random.default_rng(0)
    C, O = shape[1], 4
    x = rng.standard_normal(shape)
    w = rng.standard_normal((O, C) + kernel)
    b = rng.standard_normal(O)
    nd_ = len(kernel)
    out = ops.conv_output_size(shape[2:], kernel, (stride,) * nd_ if isinstance(stride, int)
                               else stride, (pad,) * nd_ if isinstance(pad, int) else pad,
                               (dilate,) * nd_ if isinstance(dilate, int) else dilate)
    assert _unfold_channels_first(x, False, 1, C, kernel, out)   # the path under test
    last = {1: 'NWC', 2: 'NHWC'}[nd_]
    grads = []
    for layout in (None, last):
        xa = x if layout is None else np.ascontiguousarray(np.moveaxis(x, 1, -1))
        wa = w if layout is None else np.ascontiguousarray(np.moveaxis(w, 1, -1))
        arrs = [nd.array(a, ctx=ctx, dtype=np.float64) for a in (xa, wa, b)]
        for a in arrs:
            a.attach_grad()
        with autograd.record():
            y = ops.convolution(*arrs, stride=stride, pad=pad, dilate=dilate, layout=layout)
        yh = y.asnumpy()
        gy = np.random.default_rng(2).standard_normal(yh.shape if layout is None else
                                                       np.moveaxis(yh, -1, 1).shape)
        y.backward(nd.array(gy if layout is None else np.moveaxis(gy, 1, -1), ctx=ctx,
                            dtype=np.float64))
        res = [yh, arrs[0].grad.asnumpy(), arrs[1].grad.asnumpy(), arrs[2].grad.asnumpy()]
        if layout is not None:
            res = [np.moveaxis(r, -1, 1) if r.ndim > 1 else r for r in res]
        grads.append(res)
    for a, c, what in zip(*grads, ['output', 'input grad', 'weight grad', 'bias grad']):
        np.testing.assert_allclose(a, c, rtol=1e-10, atol=1e-10, err_msg=what)


def test_channels_first_unfold_gradcheck(ctx):
    rng = np.random.default_rng(0)
    check_grad(lambda x, w, b: ops.convolution(x, w, b, stride=(1, 2), pad=1),
               [rng.standard_normal((2, 2, 4, 14)), rng.standard_normal((3, 2, 3, 3)),
                rng.standard_normal(3)], ctx=ctx)


# ---- BatchNorm statistics ----------------------------------------------------------------

@pytest.mark.parametrize('mean', [0.5, 1000.0])      # one-pass statistics / centred fallback
def test_batch_norm_statistics_paths(mean, ctx):
    rng = np.random.default_rng(0)
    host = (rng.standard_normal((8, 3, 4, 4)) * 2 + mean).astype(np.float32)
    host[:, 2] = mean                                # a constant channel: variance 0
    C = 3
    x = nd.array(host, ctx=ctx)
    gamma, beta = nd.array(rng.standard_normal(C), ctx=ctx), nd.array(rng.standard_normal(C),
                                                                      ctx=ctx)
    rm, rv = nd.zeros(C, ctx=ctx), nd.ones(C, ctx=ctx)
    y = ops.batch_norm(x, gamma, beta, rm, rv, training=True).asnumpy()
    x64 = host.astype(np.float64)
    m = x64.mean(axis=(0, 2, 3), keepdims=True)
    v = x64.var(axis=(0, 2, 3), keepdims=True)
    ref = (x64 - m) / np.sqrt(v + 1e-5) * gamma.asnumpy().reshape(1, C, 1, 1) + \
        beta.asnumpy().reshape(1, C, 1, 1)
    # float32 input at |x| ~ 1000 carries 6e-5 absolute rounding of its own
    np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-4 if mean > 100 else 1e-5)
    np.testing.assert_allclose(rv.asnumpy(), 0.9 + 0.1 * v.ravel(), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize('mean', [0.5, 50.0])
def test_batch_norm_statistics_paths_gradcheck(mean, ctx):
    rng = np.random.default_rng(0)
    C = 3

    def bn(x, g, b):
        return ops.batch_norm(x, g, b, nd.zeros(C, ctx=ctx, dtype=x.dtype),
                              nd.ones(C, ctx=ctx, dtype=x.dtype), training=True)
    check_grad(bn, [rng.standard_normal((4, C, 3, 2)) + mean, rng.standard_normal(C),
                    rng.standard_normal(C)], ctx=ctx)


# ---- BatchNorm + ReLU as one op ------------------------------------------------------------

def _bn_args(ctx, mean, channels_last):
    rng = np.random.default_rng(3)
    C = 4
    host = rng.standard_normal((5, C, 3, 6)) * 2 + mean
    x = nd.array(host, ctx=ctx, dtype='float64')
    if channels_last:                    # the memory layout convolution outputs have
        x = ops.transpose(ops.transpose(x, (0, 2, 3, 1)).copy(), (0, 3, 1, 2))
    gamma = nd.array(rng.standard_normal(C), ctx=ctx, dtype='float64')
    beta = nd.array(rng.standard_normal(C), ctx=ctx, dtype='float64')
    return x, gamma, beta


@pytest.mark.parametrize('mean', [0.5, 1000.0])      # one-pass statistics / centred fallback
@pytest.mark.parametrize('channels_last', [False, True])
@pytest.mark.parametrize('fix_gamma,center', [(False, True), (True, False)])
def test_batch_norm_relu_equals_relu_of_batch_norm(mean, channels_last, fix_gamma, center,
                                                   ctx):
    results = []
    for fused in (True, False):
        x, gamma, beta = _bn_args(ctx, mean, channels_last)
        for a in (x, gamma, beta):
            a.attach_grad()
        rm, rv = nd.zeros(4, ctx=ctx, dtype='float64'), nd.ones(4, ctx=ctx, dtype='float64')
        head = np.random.default_rng(4).standard_normal(x.shape)
        with autograd.record():
            if fused:
                y = ops.batch_norm(x, gamma, beta, rm, rv, fix_gamma=fix_gamma, center=center,
                                   act='relu')
            else:
                y = ops.relu(ops.batch_norm(x, gamma, beta, rm, rv, fix_gamma=fix_gamma,
                                            center=center))
        y.backward(nd.array(head, ctx=ctx, dtype='float64'))
        results.append([y.asnumpy(), x.grad.asnumpy(), gamma.grad.asnumpy(),
                        beta.grad.asnumpy(), rm.asnumpy(), rv.asnumpy()])
    assert (results[0][0] == 0).any() and (results[0][0] > 0).any()
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


def test_batch_norm_relu_gradcheck(ctx):
    rng = np.random.default_rng(5)
    C = 3

    def bn(x, g, b):
        return ops.batch_norm(x, g, b, nd.zeros(C, ctx=ctx, dtype=x.dtype),
                              nd.ones(C, ctx=ctx, dtype=x.dtype), training=True, act='relu')
    check_grad(bn, [rng.standard_normal((4, C, 3, 2)), rng.standard_normal(C),
                    rng.standard_normal(C)], ctx=ctx)


def test_batch_norm_relu_in_inference_mode(ctx):
    x, gamma, beta = _bn_args(ctx, 0.5, False)
    rm = nd.array(np.linspace(-1, 1, 4), ctx=ctx, dtype='float64')
    rv = nd.array(np.linspace(0.5, 2, 4), ctx=ctx, dtype='float64')
    fused = ops.batch_norm(x, gamma, beta, rm, rv, training=False, act='relu').asnumpy()
    plain = ops.batch_norm(x, gamma, beta, rm, rv, training=False).asnumpy()
    np.testing.assert_allclose(fused, np.maximum(plain, 0), rtol=1e-12)


def test_batch_norm_rejects_an_unknown_fused_activation():
    x, gamma, beta = _bn_args(xpnet.cpu(), 0.5, False)
    with pytest.raises(ValueError, match="act must be None or 'relu'"):
        ops.batch_norm(x, gamma, beta, nd.zeros(4), nd.ones(4), act='tanh')


class _RecordingBatchNorm:
    """Records the ``act`` of every ops.batch_norm call."""

    def __init__(self, monkeypatch):
        self.acts = []
        original = ops.batch_norm

        def spy(*args, act=None, **kwargs):
            self.acts.append(act)
            return original(*args, act=act, **kwargs)
        monkeypatch.setattr(ops, 'batch_norm', spy)


def _bn_net(act='relu', cls=nn.BatchNorm):
    net = nn.HybridSequential()
    net.add(nn.Conv2D(4, 3, in_channels=2), cls(), nn.Activation(act),
            nn.Dense(3))
    net.initialize(init=xpnet.init.Xavier())
    return net


def _run(net, x):
    with autograd.record():
        out = net(x)
    out.backward()
    return [out.asnumpy()] + [p.grad().asnumpy() for p in net.collect_params().values()
                              if p.grad_req != 'null']


def test_sequential_runs_batch_norm_and_relu_as_one_op(monkeypatch):
    spy = _RecordingBatchNorm(monkeypatch)
    x = nd.array(np.random.default_rng(6).standard_normal((3, 2, 6, 6)))
    xpnet.random.seed(1)
    net = _bn_net()
    fused = _run(net, x)
    assert spy.acts == ['relu']
    # a hook must see BatchNorm's own output: the pair then runs as two layers
    seen = []
    net[1].register_forward_hook(lambda block, args, out: seen.append(out.asnumpy()))
    separate = _run(net, x)
    assert spy.acts == ['relu', None] and seen and (seen[0] < 0).any()
    for a, b in zip(fused, separate):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize('make', [
    lambda: _bn_net(act='tanh'),                                  # not a ReLU
    lambda: _bn_net(cls=type('MyBN', (nn.BatchNorm,), {            # forward overridden
        'forward': lambda self, x: nn.BatchNorm.forward(self, x)})),
])
def test_sequential_fuses_only_plain_batch_norm_and_relu(make, monkeypatch):
    spy = _RecordingBatchNorm(monkeypatch)
    x = nd.array(np.random.default_rng(6).standard_normal((3, 2, 6, 6)))
    _run(make(), x)
    assert spy.acts == [None]


def test_sequential_with_activation_hook_is_not_fused(monkeypatch):
    spy = _RecordingBatchNorm(monkeypatch)
    net = _bn_net()
    net[2].register_forward_pre_hook(lambda block, args: None)
    _run(net, nd.array(np.random.default_rng(6).standard_normal((3, 2, 6, 6))))
    assert spy.acts == [None]


# ---- widened per-channel helpers ---------------------------------------------------------

def test_widening_and_row_helpers(ctx):
    assert widening(32768, 32) == 32 and widening(8192, 64) == 16
    assert widening(15, 32) == 1 and widening(6, 32) == 2 and widening(4, 2000) == 1
    xp = ctx.xp
    rng = np.random.default_rng(0)
    host = rng.standard_normal((6, 4, 5)).astype(np.float32)
    a = xp.asarray(host.copy())          # cpu: asarray would alias host
    np.testing.assert_allclose(to_host(channel_sum(xp, a)), host.sum(axis=(0, 1)),
                               rtol=1e-5)
    v = rng.standard_normal(5).astype(np.float32)
    add_channel_vector(xp, a, xp.asarray(v))
    np.testing.assert_allclose(to_host(a), host + v, rtol=1e-6)
    strided = xp.asarray(host.copy())[:, ::2]                 # not contiguous: plain broadcast
    add_channel_vector(xp, strided, xp.asarray(v))
    np.testing.assert_allclose(to_host(strided), host[:, ::2] + v, rtol=1e-6)
    k = 4
    np.testing.assert_allclose(to_host(fold(tile(xp, xp.asarray(v), k), k, 5)), k * v,
                               rtol=1e-6)


# ---- max pooling with a bool arg-max ------------------------------------------------------

@pytest.mark.parametrize('pool,stride', [(2, 2), (2, 1), (3, 2)])
def test_max_pool_ties_go_to_first(pool, stride, ctx):
    """Constant input: every window ties, so the whole gradient goes to each window's first
    element in row-major order."""
    x = nd.array(np.ones((1, 1, 5, 5)), ctx=ctx)
    x.attach_grad()
    with autograd.record():
        y = ops.pooling(x, kernel=pool, stride=stride, pool_type='max')
    y.backward()
    want = np.zeros((5, 5))
    n = (5 - pool) // stride + 1
    for i in range(n):
        for j in range(n):
            want[i * stride, j * stride] += 1
    np.testing.assert_array_equal(x.grad.asnumpy()[0, 0], want)


@pytest.mark.parametrize('pool,stride', [(2, 2), (2, 1)])
def test_max_pool_two_wide_gradcheck(pool, stride, ctx):
    rng = np.random.default_rng(0)
    check_grad(lambda x: ops.pooling(x, kernel=pool, stride=stride, pool_type='max'),
               [rng.standard_normal((2, 3, 5, 4))], ctx=ctx)



def test_winograd_pooled_buffers_survive_a_retained_graph(force_winograd, monkeypatch):
    """The transformed input goes back to the scratch pool only once the graph is freed:
    a second backward of a retained graph, after other convolutions reused the pool, gives
    the same gradients."""
    from xpnet.backend import memory
    monkeypatch.setattr(memory.scratch, 'min_bytes', 1)       # pool every buffer
    memory.scratch.clear()
    force_winograd(True)
    rng = np.random.default_rng(7)
    x = nd.array(rng.standard_normal((2, 4, 9, 9)))
    w = nd.array(rng.standard_normal((5, 4, 3, 3)))
    w.attach_grad()
    with autograd.record():
        y = ops.convolution(x, w, pad=1)
    y.backward(retain_graph=True)
    first = w.grad.asnumpy().copy()
    for _ in range(2):                       # reuse whatever went back to the pool
        with autograd.record():
            z = ops.convolution(nd.array(rng.standard_normal((2, 4, 9, 9))), w, pad=1)
        z.backward()
    y.backward()
    np.testing.assert_array_equal(w.grad.asnumpy(), first)
    memory.scratch.clear()
