"""The fused device kernels against the CPU implementations, op by op, in float32 and
float64: forward outputs and the gradients of a random head gradient, plus float64
finite-difference checks of the fused paths.

Every test runs on the simulated device (where each kernel is its NumPy stand-in, counted
as one launch) and, when a GPU is present, on ``gpu(0)`` (the CUDA kernels themselves):
one GPU run finds every compile error and numeric mismatch. ``tools/gpu_session.sh`` runs
this file first.
"""
import numpy as np
import pytest

from gradcheck import check_grad

import xpnet
from xpnet import autograd, ops
from xpnet.backend import kernels, sim, simulated, to_host

DEVICES = ['sim'] + (['gpu'] if xpnet.num_gpus() > 0 else [])
TOL = {np.float32: dict(rtol=2e-4, atol=2e-5), np.float64: dict(rtol=1e-9, atol=1e-11)}


@pytest.fixture(params=DEVICES)
def device(request):
    """sim(1) (not the current device) and gpu(0) when present."""
    return sim(1) if request.param == 'sim' else xpnet.gpu(0)


def _run(fn, hosts, ctx, dtype, grads=True, seed=1):
    """Outputs and input gradients (of a fixed random head gradient) of ``fn`` on ``ctx``;
    float host inputs are cast to ``dtype``, others kept."""
    arrays = []
    for h in hosts:
        h = np.asarray(h)
        a = xpnet.array(h.astype(dtype) if h.dtype.kind == 'f' else h, ctx=ctx,
                        dtype=dtype if h.dtype.kind == 'f' else h.dtype)
        if grads and h.dtype.kind == 'f':
            a.attach_grad()
        arrays.append(a)
    with autograd.record():
        out = fn(*arrays)
    outs = list(out) if isinstance(out, (list, tuple)) else [out]
    rng = np.random.default_rng(seed)
    heads = [rng.standard_normal(o.shape).astype(o.dtype) for o in outs]
    if grads:
        pairs = [(o, h) for o, h in zip(outs, heads) if o._node is not None]
        autograd.backward([o for o, _ in pairs],
                          [xpnet.array(h, ctx=ctx, dtype=h.dtype) for _, h in pairs])
    got = [o.asnumpy() for o in outs]
    if grads:
        got += [a.grad.asnumpy() for a in arrays if a.grad is not None]
    return got


def assert_same_as_cpu(fn, hosts, ctx, dtype, grads=True, **tol):
    tol = tol or TOL[dtype]
    want = _run(fn, hosts, xpnet.cpu(), dtype, grads)
    with simulated.counting() as c:
        got = _run(fn, hosts, ctx, dtype, grads)
    assert len(got) == len(want)
    for i, (g, w) in enumerate(zip(got, want)):
        np.testing.assert_allclose(g, w, err_msg=f'output/gradient {i}', **tol)
    return c


def rnd(*shape, scale=1.0, seed=0):
    return np.random.default_rng(seed + sum(shape)).standard_normal(shape) * scale


DTYPES = [np.float32, np.float64]


# ---- dense, softmax cross-entropy, dropout ----------------------------------------------------

@pytest.mark.parametrize('dtype', DTYPES)
@pytest.mark.parametrize('act', [None, 'relu', 'tanh', 'sigmoid'])
@pytest.mark.parametrize('bias', [True, False])
def test_dense(device, dtype, act, bias):
    hosts = [rnd(6, 5), rnd(7, 5)] + ([rnd(7)] if bias else [])
    assert_same_as_cpu(lambda x, w, *b: ops.fully_connected(x, w, b[0] if b else None,
                                                            act=act), hosts, device, dtype)


@pytest.mark.parametrize('dtype', DTYPES)
def test_dense_without_flattening(device, dtype):
    assert_same_as_cpu(lambda x, w, b: ops.fully_connected(x, w, b, flatten=False,
                                                           act='relu'),
                       [rnd(2, 3, 4), rnd(5, 4), rnd(5)], device, dtype)


@pytest.mark.parametrize('dtype', DTYPES)
@pytest.mark.parametrize('label_dtype', [np.float32, np.int32, np.int64, np.uint8])
@pytest.mark.parametrize('from_logits', [False, True])
def test_softmax_cross_entropy(device, dtype, label_dtype, from_logits):
    labels = np.array([0, 3, 1, 2, 9, 3], dtype=label_dtype)       # 9: clipped to 4, as MXNet
    if label_dtype == np.float32:
        labels[1] = 2.7                                           # truncated to 2
    assert_same_as_cpu(lambda p, l: ops.softmax_cross_entropy(p, l, from_logits=from_logits),
                       [rnd(6, 5, scale=3), labels], device, dtype)


@pytest.mark.parametrize('dtype', DTYPES)
def test_dropout_masks_are_philox_drawn_on_the_device(device, dtype):
    from xpnet.backend.kernels.elementwise import philox_words, uniform_from_words
    from xpnet.random import _device_key
    x = np.ones((7, 9), dtype=dtype)
    xpnet.random.seed(3)
    a = xpnet.array(x, ctx=device, dtype=dtype)
    a.attach_grad()
    with autograd.record(train_mode=True):
        y = ops.dropout(a, 0.3)
    y.backward(xpnet.array(2 * x, ctx=device, dtype=dtype))
    keep = uniform_from_words(np, philox_words(np, x.size, _device_key(3), 0)).reshape(
        x.shape) >= np.float32(0.3)
    scale = dtype(1 / 0.7)
    np.testing.assert_array_equal(y.asnumpy(), np.where(keep, scale, 0).astype(dtype))
    np.testing.assert_array_equal(a.grad.asnumpy(), np.where(keep, 2 * scale, 0))
    with autograd.record(train_mode=True):        # the stream moves on: another mask
        y2 = ops.dropout(a, 0.3)
    keep2 = uniform_from_words(np, philox_words(np, x.size, _device_key(3),
                                                -(-x.size // 4))).reshape(x.shape) >= 0.3
    np.testing.assert_array_equal(y2.asnumpy() != 0, keep2)
    assert 0.55 < keep.mean() < 0.85


def test_dropout_masks_are_reproducible_and_checkpointable(device):
    x = xpnet.array(np.ones((50,)), ctx=device)
    xpnet.random.seed(5)
    with autograd.train_mode():
        first = ops.dropout(x, 0.5).asnumpy()
        state = xpnet.random.get_state()
        second = ops.dropout(x, 0.5).asnumpy()
        xpnet.random.set_state(state)
        again = ops.dropout(x, 0.5).asnumpy()
    np.testing.assert_array_equal(second, again)
    assert not np.array_equal(first, second)


@pytest.mark.parametrize('dtype', DTYPES)
def test_dropout_with_shared_axes(device, dtype):
    a = xpnet.array(rnd(4, 3, 5), ctx=device, dtype=dtype)
    with autograd.train_mode():
        y = ops.dropout(a, 0.5, axes=(1,)).asnumpy()
    ratio = y / a.asnumpy()
    np.testing.assert_allclose(ratio, np.broadcast_to(ratio[:, :1], ratio.shape))


# ---- batch norm, convolution, pooling -------------------------------------------------------

def _bn(axis=1, act=None, fix_gamma=False, center=True):
    def fn(x, gamma, beta):
        C = x.shape[axis]
        rm = xpnet.nd.zeros((C,), ctx=x.context, dtype=x.dtype)
        rv = xpnet.nd.ones((C,), ctx=x.context, dtype=x.dtype)
        y = ops.batch_norm(x, gamma, beta, rm, rv, axis=axis, training=True, act=act,
                           fix_gamma=fix_gamma, center=center, momentum=0.8)
        return [y, rm * 1, rv * 1]
    return fn


@pytest.mark.parametrize('dtype', DTYPES)
@pytest.mark.parametrize('act', [None, 'relu'])
@pytest.mark.parametrize('shape,axis', [((8, 5), 1), ((3, 4, 5, 6), 1), ((3, 5, 6, 4), -1)])
def test_batch_norm(device, dtype, act, shape, axis):
    C = shape[axis]
    hosts = [rnd(*shape, scale=2) + 3, rnd(C) + 1, rnd(C)]
    assert_same_as_cpu(_bn(axis, act), hosts, device, dtype)


@pytest.mark.parametrize('dtype', DTYPES)
def test_batch_norm_fixed_gamma_no_center(device, dtype):
    assert_same_as_cpu(_bn(fix_gamma=True, center=False), [rnd(6, 4, 3), rnd(4), rnd(4)],
                       device, dtype)


def test_batch_norm_of_a_channels_last_convolution_output(device):
    """A convolution's output is a channels-last buffer: BatchNorm reads it without a
    copy (2 kernels forward)."""
    def fn(x, w, gamma, beta):
        return _bn(act='relu')(ops.convolution(x, w, None, pad=1), gamma, beta)[0]
    assert_same_as_cpu(fn, [rnd(2, 3, 5, 5), rnd(4, 3, 3, 3), rnd(4), rnd(4)], device,
                       np.float32)


CONVS = [  # (x shape, w shape, kwargs)
    ((2, 3, 6, 6), (4, 3, 3, 3), dict(pad=1)),
    ((2, 3, 7, 6), (4, 3, 3, 2), dict(stride=2, pad=(1, 0))),
    ((2, 3, 9, 9), (5, 3, 3, 3), dict(dilate=2, pad=2)),
    ((2, 4, 5, 5), (6, 4, 1, 1), {}),
    ((2, 3, 8), (4, 3, 3), dict(stride=2, pad=1)),
    ((1, 2, 4, 5, 5), (3, 2, 2, 3, 3), dict(pad=1)),
    ((2, 6, 6, 3), (4, 3, 3, 3), dict(pad=1, layout='NHWC')),
    ((2, 5, 5, 4), (6, 4, 1, 1), dict(layout='NHWC')),        # 1x1: no unfolding
]


@pytest.mark.parametrize('dtype', DTYPES)
@pytest.mark.parametrize('xs,ws,kw', CONVS)
@pytest.mark.parametrize('bias', [True, False])
def test_convolution(device, dtype, xs, ws, kw, bias):
    O = ws[0]
    hosts = [rnd(*xs), rnd(*ws, scale=0.5)] + ([rnd(O)] if bias else [])
    if kw.get('layout') == 'NHWC':
        hosts[1] = rnd(ws[0], ws[2], ws[3], ws[1], scale=0.5)
    assert_same_as_cpu(lambda x, w, *b: ops.convolution(x, w, b[0] if b else None, **kw),
                       hosts, device, dtype)


POOLS = [
    ((2, 3, 6, 6), dict(kernel=2, pool_type='max')),
    ((2, 3, 7, 7), dict(kernel=3, stride=2, pad=1, pool_type='max')),
    ((2, 3, 7, 7), dict(kernel=3, stride=2, pool_type='max', ceil_mode=True)),
    ((2, 3, 6, 6), dict(kernel=2, pool_type='avg')),
    ((2, 3, 7, 7), dict(kernel=3, stride=2, pad=1, pool_type='avg',
                        count_include_pad=False)),
    ((2, 3, 7, 7), dict(kernel=3, stride=2, pad=1, pool_type='avg', ceil_mode=True)),
    ((2, 3, 5, 5), dict(kernel=2, stride=1, pool_type='sum')),
    ((2, 3, 9), dict(kernel=3, stride=2, pool_type='max')),
    ((1, 2, 4, 4, 4), dict(kernel=2, pool_type='avg')),
    ((2, 3, 4, 5), dict(pool_type='avg', global_pool=True)),
    ((2, 3, 4, 5), dict(pool_type='sum', global_pool=True)),
]


@pytest.mark.parametrize('dtype', DTYPES)
@pytest.mark.parametrize('xs,kw', POOLS)
def test_pooling(device, dtype, xs, kw):
    x = np.random.default_rng(0).permutation(int(np.prod(xs))).reshape(xs) / 10.0
    assert_same_as_cpu(lambda a: ops.pooling(a, **kw), [x], device, dtype)


# ---- recurrent steps ----------------------------------------------------------------------------

RNNS = [('lstm', 4), ('gru', 3), ('rnn_tanh', 1), ('rnn_relu', 1)]


@pytest.mark.parametrize('dtype', DTYPES)
@pytest.mark.parametrize('mode,ng', RNNS)
@pytest.mark.parametrize('valid', [False, True])
@pytest.mark.parametrize('reverse', [False, True])
def test_rnn_sequence(device, dtype, mode, ng, valid, reverse):
    T, N, C, H = 5, 3, 4, 6
    hosts = [rnd(T, N, C), rnd(N, H), rnd(N, H), rnd(ng * H, C, scale=0.5),
             rnd(ng * H, H, scale=0.5), rnd(ng * H), rnd(ng * H)]
    vl = np.array([5, 2, 3]) if valid else None

    def fn(x, h, c, wi, wh, bi, bh):
        v = None if vl is None else xpnet.array(vl, ctx=x.context)
        return ops.rnn_sequence(x, h, c if mode == 'lstm' else None, wi, wh, bi, bh,
                                mode=mode, valid_length=v, reverse=reverse)
    assert_same_as_cpu(fn, hosts, device, dtype)


@pytest.mark.parametrize('dtype', DTYPES)
@pytest.mark.parametrize('clip_nan', [False, True])
def test_lstm_cell_clipping(device, dtype, clip_nan):
    T, N, C, H = 4, 2, 3, 5
    hosts = [rnd(T, N, C, scale=3), rnd(N, H), rnd(N, H), rnd(4 * H, C), rnd(4 * H, H),
             rnd(4 * H), rnd(4 * H)]

    def fn(x, h, c, wi, wh, bi, bh):
        return ops.rnn_sequence(x, h, c, wi, wh, bi, bh, mode='lstm',
                                state_clip=(-0.4, 0.5, clip_nan), return_sequence=False)
    assert_same_as_cpu(fn, hosts, device, dtype)


def test_lstm_steps_are_two_kernels_each_way(device):
    if device.device_type != 'sim':
        pytest.skip('counted on the simulated device')
    T, N, C, H = 6, 2, 3, 4
    hosts = [rnd(T, N, C), rnd(N, H), rnd(N, H), rnd(4 * H, C), rnd(4 * H, H)]

    def fn(x, h, c, wi, wh):
        return ops.rnn_sequence(x, h, c, wi, wh, mode='lstm')[0]
    counts = []
    for steps in (T, 2 * T):
        hosts[0] = rnd(steps, N, C)
        with simulated.counting() as c:
            _run(fn, hosts, device, np.float32)
        counts.append(c.kernels)
    assert (counts[1] - counts[0]) / T == 4


# ---- finite differences of the fused paths (float64) -------------------------------------------

def test_fused_paths_gradcheck(device):
    check_grad(lambda x, w, b: ops.fully_connected(x, w, b, act='tanh'),
               [rnd(3, 4), rnd(2, 4), rnd(2)], ctx=device)
    check_grad(lambda p: ops.softmax_cross_entropy(p, xpnet.array([1, 0, 2], ctx=p.context)),
               [rnd(3, 4)], ctx=device)
    check_grad(lambda x, g, b: _bn(act='relu')(x, g, b)[0], [rnd(4, 3, 2) + 0.3, rnd(3),
                                                              rnd(3)], ctx=device)
    check_grad(lambda x, w, b: ops.convolution(x, w, b, stride=2, pad=1),
               [rnd(1, 2, 5, 5), rnd(3, 2, 3, 3), rnd(3)], ctx=device)
    x = np.random.default_rng(0).permutation(2 * 2 * 4 * 4).reshape(2, 2, 4, 4) / 7.0
    check_grad(lambda a: ops.pooling(a, kernel=2, pool_type='max'), [x], ctx=device)
    check_grad(lambda a: ops.pooling(a, kernel=3, stride=2, pad=1, pool_type='avg'), [x],
               ctx=device)
    check_grad(lambda x, h, c, wi, wh: ops.rnn_sequence(x, h, c, wi, wh, mode='lstm')[0],
               [rnd(3, 2, 3), rnd(2, 2), rnd(2, 2), rnd(8, 3), rnd(8, 2)], ctx=device)


# ---- optimizers, global norm ---------------------------------------------------------------

OPTIMIZERS = [('sgd', {'learning_rate': 0.1, 'momentum': 0.9, 'wd': 1e-3}),
              ('sgd', {'learning_rate': 0.1, 'wd': 1e-3, 'clip_gradient': 0.05}),
              ('nag', {'learning_rate': 0.1, 'momentum': 0.9, 'wd': 1e-3}),
              ('adam', {'learning_rate': 0.01, 'wd': 1e-3, 'clip_gradient': 0.5}),
              ('adamw', {'learning_rate': 0.01, 'wd': 0.1})]


def _train(ctx, opt, params, dtype, steps=3):
    xpnet.random.seed(0)
    from xpnet import layers as nn
    net = nn.Sequential()
    net.add(nn.Dense(5, activation='relu', in_units=4, dtype=dtype),
            nn.Dense(3, in_units=5, dtype=dtype))
    net.initialize(init='xavier', ctx=ctx)
    net.collect_params()['1.weight'].lr_mult = 0.5
    trainer = xpnet.Trainer(net.collect_params(), opt, params)
    x = xpnet.array(rnd(8, 4), ctx=ctx, dtype=dtype)
    y = xpnet.array([0, 1, 2, 0, 1, 2, 0, 1], ctx=ctx, dtype=dtype)
    loss_fn = xpnet.loss.SoftmaxCrossEntropyLoss()
    for _ in range(steps):
        with autograd.record():
            loss = loss_fn(net(x), y)
        loss.backward()
        trainer.step(8)
    return net, trainer


@pytest.mark.parametrize('dtype', DTYPES)
@pytest.mark.parametrize('opt,params', OPTIMIZERS)
def test_multi_tensor_optimizers(device, dtype, opt, params):
    net_c, tr_c = _train(xpnet.cpu(), opt, params, dtype)
    net_d, tr_d = _train(device, opt, params, dtype)
    for (k, p), q in zip(net_c.collect_params().items(), net_d.collect_params().values()):
        np.testing.assert_allclose(q.data(device).asnumpy(), p.data().asnumpy(),
                                   err_msg=k, **TOL[dtype])
    assert tr_d.optimizer.num_update == tr_c.optimizer.num_update


def test_the_skip_flag_leaves_weights_and_states_alone(device):
    net, trainer = _train(device, 'sgd', {'learning_rate': 0.1, 'momentum': 0.9},
                          np.float32, steps=1)
    before = [p.data(device).asnumpy() for p in net.collect_params().values()]
    moms = [to_host(s._data) for s in trainer._states.values()]
    with device.use():
        flag = device.xp.ones((), dtype=np.int32)
    trainer.optimizer.set_skip_flag(flag)
    x = xpnet.array(rnd(8, 4), ctx=device)
    with autograd.record():
        loss = xpnet.loss.SoftmaxCrossEntropyLoss()(net(x), xpnet.array([0] * 8, ctx=device))
    loss.backward()
    trainer.step(8)
    for b, p in zip(before, net.collect_params().values()):
        np.testing.assert_array_equal(p.data(device).asnumpy(), b)
    for m, s in zip(moms, trainer._states.values()):
        np.testing.assert_array_equal(to_host(s._data), m)
    trainer.optimizer.set_skip_flag(None)
    with autograd.record():
        loss = xpnet.loss.SoftmaxCrossEntropyLoss()(net(x), xpnet.array([0] * 8, ctx=device))
    loss.backward()
    trainer.step(8)
    assert not np.array_equal(net.collect_params()['0.weight'].data(device).asnumpy(),
                              before[0])


@pytest.mark.parametrize('dtype', DTYPES)
def test_global_norm_and_scaling(device, dtype):
    from xpnet.backend.kernels.optim import TensorTable, global_norm, scale_by_norm
    hosts = [rnd(5, 3).astype(dtype), rnd(7).astype(dtype)]
    xp = device.xp
    with device.use():
        arrays = [xp.asarray(h) for h in hosts]
        norm = global_norm(xp, TensorTable(), arrays)
        scale_by_norm(xp, TensorTable(), arrays, norm, 0.5)
    want = np.sqrt(sum((h.astype(np.float64) ** 2).sum() for h in hosts))
    assert float(to_host(norm)[0]) == pytest.approx(want, rel=1e-6)
    for a, h in zip(arrays, hosts):
        np.testing.assert_allclose(to_host(a), h * (0.5 / (want + 1e-8)), rtol=1e-5)


# ---- metrics, checks --------------------------------------------------------------------------

def _metric_pairs(ctx):
    rng = np.random.default_rng(0)
    probs = rng.random((6, 4)) + 0.05
    probs /= probs.sum(axis=1, keepdims=True)
    labels = np.array([0, 3, 1, 1, 2, 0], dtype=np.float32)
    return [
        (xpnet.metric.Accuracy(), labels, probs),
        (xpnet.metric.Accuracy(), labels, probs.argmax(axis=1).astype(np.float32)),
        (xpnet.metric.NegativeLogLikelihood(), labels.astype(np.int16), probs),
        (xpnet.metric.Loss(), None, rng.random(6)),
        (xpnet.metric.CrossEntropy(), labels, probs),
        (xpnet.metric.NegativeLogLikelihood(), labels.astype(np.int64), probs),
        (xpnet.metric.Perplexity(ignore_label=1), labels, probs),
        (xpnet.metric.MAE(), rng.random(6), rng.random(6)),
        (xpnet.metric.MSE(), rng.random((6, 2)), rng.random((6, 2))),
        (xpnet.metric.RMSE(), rng.random(6), rng.random(6)),
    ]


@pytest.mark.parametrize('dtype', DTYPES)
def test_metrics_accumulate_on_the_device(device, dtype):
    for (m_dev, label, pred), (m_cpu, _, _) in zip(_metric_pairs(device),
                                                   _metric_pairs(xpnet.cpu())):
        for ctx, m in ((device, m_dev), (xpnet.cpu(), m_cpu)):
            p = xpnet.array(pred, ctx=ctx, dtype=dtype)
            lab = None if label is None else xpnet.array(label, ctx=ctx, dtype=label.dtype)
            for _ in range(2):
                m.update(lab, p) if label is not None else m.update(None, p)
        name, value = m_dev.get()
        assert value == pytest.approx(m_cpu.get()[1], rel=1e-5), name
        assert m_dev.num_inst == m_cpu.num_inst
        m_dev.reset_local()
        assert m_dev.get_global()[1] == pytest.approx(m_cpu.get_global()[1], rel=1e-5)


def test_metric_state_merges_from_the_device(device):
    """The distributed protocol reads the device accumulators (reduction_state/merged)."""
    a, b = xpnet.metric.Accuracy(), xpnet.metric.Accuracy()
    probs = xpnet.array(np.eye(3)[[0, 1, 2, 1]], ctx=device)
    a.update(xpnet.array([0, 1, 2, 0], ctx=device), probs)
    b.update(xpnet.array([0, 0, 2, 1], ctx=device), probs)
    merged = a.merged([a.reduction_state(), b.reduction_state()])
    assert merged.get()[1] == pytest.approx(6 / 8)


def test_device_label_checks_are_one_kernel(device):
    from xpnet.backend.checks import check_labels, flush_device_checks
    lab = xpnet.array([0, 1, 5], ctx=device)._data
    with device.use(), simulated.counting() as c:
        check_labels(lab, 3, 'test')
    if device.device_type == 'sim':
        assert c.kernels <= 2 and c.syncs == 0
    with pytest.raises(ValueError, match=r'test: labels must be whole class indices'):
        flush_device_checks()


@pytest.mark.parametrize('dtype', DTYPES + [np.float16])
def test_nonfinite_marks_the_first_batch(device, dtype):
    from xpnet.backend.kernels.checks import mark_nonfinite
    xp = device.xp
    with device.use():
        flag = xp.zeros((), dtype=np.int32)
        mark_nonfinite(xp, xp.asarray(np.ones(5, dtype)), flag, 1)
        mark_nonfinite(xp, xp.asarray(np.array([1, np.inf], dtype)), flag, 2)
        mark_nonfinite(xp, xp.asarray(np.array([np.nan], dtype)), flag, 3)
    assert int(to_host(flag)) == 2


def test_fused_kernels_can_be_turned_off():
    x = xpnet.array(rnd(3, 4), ctx=sim(0))
    w = xpnet.array(rnd(2, 4), ctx=sim(0))
    b = xpnet.array(rnd(2), ctx=sim(0))
    with simulated.counting() as fused_count:
        ops.fully_connected(x, w, b, act='sigmoid')
    with kernels.disabled(), simulated.counting() as generic:
        ops.fully_connected(x, w, b, act='sigmoid')
    assert fused_count.kernels == 2 and generic.kernels > fused_count.kernels
