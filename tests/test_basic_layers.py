"""Basic layers: MXNet Gluon 1.9.1 parity (outputs, input and parameter gradients, running
statistics), float64 gradient checks, and argument handling."""
import json

import numpy as np
import pytest

import xpnet
from xpnet import autograd, nd
from xpnet import layers as nn
from conftest import oracle
from gradcheck import check_layer_grad

REF = oracle('basic_layers.npz')
CASES = sorted({k.split('/')[0] for k in REF})


def build(case, ctx):
    cls, kwargs, train = json.loads(str(REF[f'{case}/spec']))
    layer = getattr(nn, cls)(**kwargs)
    layer.initialize(ctx=ctx)
    x = xpnet.array(REF[f'{case}/x'], ctx=ctx)
    layer(x)   # finish deferred initialization
    params = layer.collect_params()
    for key in REF:
        if key.startswith(f'{case}/param:'):
            params[key.split(':', 1)[1]].set_data(REF[key])
    return layer, x, train


def _exact_bn_inference_grads(case):
    """GLUON_NOTES: MXNet's BatchNorm gradient outside training mode is wrong; the exact one
    is gamma / sqrt(running_var + eps) * g (and the affine map's gamma/beta gradients)."""
    x, head = REF[f'{case}/x'].astype(np.float64), REF[f'{case}/head'].astype(np.float64)
    gamma, rm, rv = (REF[f'{case}/param:{n}'] for n in ('gamma', 'running_mean', 'running_var'))
    shape = (1, -1) + (1,) * (x.ndim - 2)
    inv = 1 / np.sqrt(rv.astype(np.float64) + 1e-5)
    return {'dx': head * (gamma * inv).reshape(shape),
            'grad:gamma': (head * (x - rm.reshape(shape)) * inv.reshape(shape)).sum(axis=(0, 2)),
            'grad:beta': head.sum(axis=(0, 2))}


def _exact_selu_grads(case):
    """GLUON_NOTES: SELU's gradient for x <= 0 is lambda*alpha*exp(x); MXNet's is not."""
    lam, alpha = 1.0507009873554804934193349852946, 1.6732632423543772848170429916717
    x, head = REF[f'{case}/x'].astype(np.float64), REF[f'{case}/head'].astype(np.float64)
    return {'dx': head * np.where(x > 0, lam, lam * alpha * np.exp(np.minimum(x, 0)))}


# MXNet gradients that are mathematically wrong: replaced by the exact ones.
EXACT = {'bn_infer': _exact_bn_inference_grads, 'selu': _exact_selu_grads}


def expected(case, key):
    if case in EXACT:
        exact = EXACT[case](case)
        if key in exact:
            return exact[key]
    return REF[f'{case}/{key}']


@pytest.mark.parametrize('case', CASES)
def test_parity_with_gluon(case, ctx):
    layer, x, train = build(case, ctx)
    is_index = case == 'embedding'
    if not is_index:
        x.attach_grad()
    with autograd.record(train_mode=train):
        y = layer(x)
    y.backward(xpnet.array(REF[f'{case}/head'], ctx=ctx))
    np.testing.assert_allclose(y.asnumpy(), REF[f'{case}/y'], rtol=1e-4, atol=1e-5)
    if not is_index:
        np.testing.assert_allclose(x.grad.asnumpy(), expected(case, 'dx'), rtol=1e-4, atol=1e-5)
    params = layer.collect_params()
    for key in REF:
        prefix = f'{case}/grad:'
        if key.startswith(prefix):
            name = key[len(prefix):]
            np.testing.assert_allclose(params[name].grad(ctx).asnumpy(),
                                       expected(case, f'grad:{name}'), rtol=1e-4,
                                       atol=1e-5, err_msg=f'{case}: gradient of {name}')
        prefix = f'{case}/after:'
        if key.startswith(prefix):
            name = key[len(prefix):]
            np.testing.assert_allclose(params[name].data(ctx).asnumpy(), REF[key], rtol=1e-4,
                                       atol=1e-6, err_msg=f'{case}: {name} after forward')


GRAD_LAYERS = [
    ('dense', lambda: nn.Dense(3, activation='tanh', in_units=4), (2, 4)),
    ('dense_noflatten', lambda: nn.Dense(3, flatten=False, in_units=4), (2, 2, 4)),
    ('prelu', lambda: nn.PReLU(in_channels=3), (2, 3, 2)),
    ('batchnorm', lambda: nn.BatchNorm(in_channels=3), (4, 3, 2)),
    ('batchnorm_noscale', lambda: nn.BatchNorm(in_channels=3, scale=False, center=False),
     (4, 3, 2)),
    ('layernorm', lambda: nn.LayerNorm(in_channels=4), (2, 3, 4)),
    ('instancenorm', lambda: nn.InstanceNorm(in_channels=3, scale=True), (2, 3, 4)),
    ('groupnorm', lambda: nn.GroupNorm(num_groups=2), (2, 4, 3)),
    ('swish', lambda: nn.Swish(2.0), (2, 3)),
    ('gelu', lambda: nn.GELU(), (2, 3)),
    ('concurrent', lambda: _concurrent(), (2, 3)),
]


def _concurrent():
    net = nn.HybridConcurrent(axis=1)
    net.add(nn.Dense(2, in_units=3), nn.Identity(), nn.Dense(1, activation='sigmoid', in_units=3))
    return net


@pytest.mark.parametrize('name,make,shape', GRAD_LAYERS, ids=[g[0] for g in GRAD_LAYERS])
def test_layer_gradients_fd(name, make, shape, ctx):
    layer = make()
    layer.initialize(ctx=ctx)
    x = np.random.default_rng(3).uniform(-1, 1, shape)
    layer.cast('float64')
    layer(xpnet.array(x, ctx=ctx, dtype='float64'))
    check_layer_grad(layer, [x], ctx=ctx, rtol=1e-4, atol=1e-6)


def test_batchnorm_running_stats_and_modes(ctx):
    bn = nn.BatchNorm(momentum=0.9)
    bn.initialize(ctx=ctx)
    x = np.random.default_rng(0).normal(2.0, 3.0, size=(64, 4)).astype(np.float32)
    with autograd.record():
        y = bn(xpnet.array(x, ctx=ctx))
    # Normalized with batch statistics (biased variance).
    np.testing.assert_allclose(y.asnumpy().mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(y.asnumpy().var(axis=0), 1, rtol=1e-3)
    rm = bn.running_mean.data(ctx).asnumpy()
    rv = bn.running_var.data(ctx).asnumpy()
    np.testing.assert_allclose(rm, 0.1 * x.mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(rv, 0.9 + 0.1 * x.var(axis=0), rtol=1e-5)
    # Inference uses (and does not change) the running statistics.
    y2 = bn(xpnet.array(x, ctx=ctx)).asnumpy()
    np.testing.assert_allclose(y2, (x - rm) / np.sqrt(rv + 1e-5), rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(bn.running_mean.data(ctx).asnumpy(), rm)
    # use_global_stats: running statistics even in training, never updated.
    g = nn.BatchNorm(use_global_stats=True, in_channels=4)
    g.initialize(ctx=ctx)
    with autograd.record():
        y3 = g(xpnet.array(x, ctx=ctx))
    np.testing.assert_allclose(y3.asnumpy(), x / np.sqrt(1 + 1e-5), rtol=1e-5)
    np.testing.assert_array_equal(g.running_mean.data(ctx).asnumpy(), 0)


def test_batchnorm_frozen_params_have_no_grad():
    bn = nn.BatchNorm(scale=False, center=False, in_channels=2)
    assert bn.gamma.grad_req == 'null' and bn.beta.grad_req == 'null'
    assert bn.running_mean.grad_req == 'null'


def test_dropout_statistics_and_modes(ctx):
    drop = nn.Dropout(0.3)
    x = nd.ones((200, 500), ctx=ctx)
    assert drop(x) is x or np.array_equal(drop(x).asnumpy(), x.asnumpy())   # predict mode
    with autograd.record():
        y = drop(x).asnumpy()
    kept = y != 0
    assert abs(kept.mean() - 0.7) < 0.01
    np.testing.assert_allclose(y[kept], 1 / 0.7, rtol=1e-6)
    with autograd.record(train_mode=False):
        np.testing.assert_array_equal(drop(x).asnumpy(), 1)
    with autograd.train_mode():
        assert (drop(x).asnumpy() == 0).any()
    # Shared mask along an axis.
    shared = nn.Dropout(0.5, axes=(1,))
    with autograd.record():
        z = shared(nd.ones((6, 7), ctx=ctx)).asnumpy()
    assert all(len(set(row)) == 1 for row in z)
    with pytest.raises(ValueError):
        nn.Dropout(1.5)


def test_dropout_reproducible_with_seed(ctx):
    drop = nn.Dropout(0.5)
    x = nd.ones((10, 10), ctx=ctx)
    xpnet.random.seed(7)
    with autograd.record():
        a = drop(x).asnumpy()
    xpnet.random.seed(7)
    with autograd.record():
        b = drop(x).asnumpy()
    np.testing.assert_array_equal(a, b)


def test_dense_deferred_and_shapes(ctx):
    d = nn.Dense(7)
    d.initialize(ctx=ctx)
    assert d.weight.shape == (7, 0)
    out = d(nd.ones((2, 3, 4), ctx=ctx))
    assert out.shape == (2, 7) and d.weight.shape == (7, 12)
    with pytest.raises(ValueError, match='12'):
        d(nd.ones((2, 5), ctx=ctx))
    d2 = nn.Dense(7, flatten=False)
    d2.initialize(ctx=ctx)
    assert d2(nd.ones((2, 3, 4), ctx=ctx)).shape == (2, 3, 7)
    assert nn.Dense(3, in_units=5).weight.shape == (3, 5)


def test_embedding_sparse_grad_rows(ctx):
    emb = nn.Embedding(10, 3, sparse_grad=True)
    emb.initialize(ctx=ctx)
    idx = xpnet.array([[1, 4], [4, 9]], ctx=ctx)
    with autograd.record():
        out = emb(idx)
    out.backward()
    g = emb.weight.grad(ctx).asnumpy()
    expected = np.zeros((10, 3))
    expected[[1, 9]] = 1
    expected[4] = 2
    np.testing.assert_array_equal(g, expected)


def test_activation_errors():
    with pytest.raises(ValueError, match='unknown activation'):
        nn.Activation('bogus')
    with pytest.raises(ValueError):
        nn.LeakyReLU(-1)


def test_norm_errors(ctx):
    gn = nn.GroupNorm(num_groups=3)
    gn.initialize(ctx=ctx)
    with pytest.raises(ValueError, match='3 groups'):
        gn(nd.ones((2, 4, 5), ctx=ctx))
    bn = nn.BatchNorm(in_channels=3)
    bn.initialize(ctx=ctx)
    with pytest.raises(ValueError, match='channels'):
        bn(nd.ones((2, 4), ctx=ctx))
    inorm = nn.InstanceNorm()
    inorm.initialize(ctx=ctx)
    with pytest.raises(ValueError, match='3 dimensions'):
        inorm(nd.ones((2, 4), ctx=ctx))


def test_containers(ctx):
    net = nn.Concurrent(axis=1)
    net.add(nn.Dense(2), nn.Dense(3))
    net.initialize(ctx=ctx)
    assert net(nd.ones((4, 5), ctx=ctx)).shape == (4, 5)
    seq = nn.HybridSequential()
    seq.add(nn.Dense(4, activation='relu'), nn.Dropout(0.5), nn.Dense(2))
    seq.initialize(ctx=ctx)
    assert seq(nd.ones((3, 6), ctx=ctx)).shape == (3, 2)
    assert len(seq) == 3 and isinstance(seq[1], nn.Dropout)
    sub = seq[:2]
    assert isinstance(sub, nn.HybridSequential) and len(sub) == 2
    lam = nn.Lambda('relu')
    assert lam(nd.array([-1., 2.], ctx=ctx)).asnumpy().tolist() == [0, 2]
    hl = nn.HybridLambda(lambda F, x: F.tanh(x) * 2)
    np.testing.assert_allclose(hl(nd.array([0.5], ctx=ctx)).asnumpy(), 2 * np.tanh(0.5),
                               rtol=1e-6)
    with pytest.raises(ValueError):
        nn.Lambda('no_such_function')
    with pytest.raises(TypeError):
        seq.add('not a block')
