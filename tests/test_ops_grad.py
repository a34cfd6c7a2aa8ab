"""Finite-difference gradient checks (float64) of every differentiable op in ``xpnet.nd``
and of NDArray's operators, on every backend."""
import numpy as np
import pytest

import xpnet
from xpnet import nd
from gradcheck import check_grad

R = np.random.default_rng(1)


def rnd(*shape, low=-1.0, high=1.0):
    return R.uniform(low, high, size=shape)


def away_from_zero(*shape):
    x = rnd(*shape)
    return np.where(np.abs(x) < 0.1, 0.5, x)


UNARY = [
    ('exp', nd.exp, rnd(3, 4)),
    ('log', nd.log, rnd(3, 4, low=0.5, high=2)),
    ('sqrt', nd.sqrt, rnd(3, 4, low=0.5, high=2)),
    ('rsqrt', nd.rsqrt, rnd(3, 4, low=0.5, high=2)),
    ('square', nd.square, rnd(3, 4)),
    ('abs', nd.abs, away_from_zero(3, 4)),
    ('reciprocal', nd.reciprocal, rnd(3, 4, low=0.5, high=2)),
    ('sigmoid', nd.sigmoid, rnd(3, 4, low=-4, high=4)),
    ('tanh', nd.tanh, rnd(3, 4, low=-2, high=2)),
    ('relu', nd.relu, away_from_zero(3, 4)),
    ('softrelu', nd.softrelu, rnd(3, 4, low=-3, high=3)),
    ('softsign', nd.softsign, rnd(3, 4, low=-3, high=3)),
    ('gelu', nd.gelu, rnd(3, 4, low=-3, high=3)),
    ('selu', nd.selu, away_from_zero(3, 4)),
    ('elu', lambda x: nd.elu(x, 0.7), away_from_zero(3, 4)),
    ('swish', lambda x: nd.swish(x, 1.5), rnd(3, 4)),
    ('erf', nd.erf, rnd(3, 4, low=-2, high=2)),
    ('log1p', nd.log1p, rnd(3, 4, low=0, high=2)),
    ('expm1', nd.expm1, rnd(3, 4)),
    ('sin', nd.sin, rnd(3, 4)),
    ('cos', nd.cos, rnd(3, 4)),
    ('negative', nd.negative, rnd(3, 4)),
    ('softmax', lambda x: nd.softmax(x, axis=-1), rnd(3, 4)),
    ('softmax_axis0', lambda x: nd.softmax(x, axis=0), rnd(3, 4)),
    ('log_softmax', lambda x: nd.log_softmax(x, axis=1), rnd(3, 4)),
    ('softmax_temperature', lambda x: nd.softmax(x, temperature=2.0), rnd(3, 4)),
    ('clip', lambda x: nd.clip(x, -0.5, 0.5), np.array([[-0.9, -0.2, 0.3, 0.8]])),
    ('sum_all', lambda x: x.sum(), rnd(3, 4)),
    ('sum_axis', lambda x: x.sum(axis=1), rnd(3, 4, 2)),
    ('sum_keepdims', lambda x: x.sum(axis=(0, 2), keepdims=True), rnd(3, 4, 2)),
    ('sum_exclude', lambda x: nd.sum(x, axis=1, exclude=True), rnd(3, 4, 2)),
    ('mean', lambda x: x.mean(axis=0), rnd(3, 4)),
    ('max', lambda x: x.max(axis=1), rnd(3, 4)),
    ('min', lambda x: x.min(), rnd(3, 4)),
    ('prod', lambda x: nd.prod(x, axis=1), rnd(3, 4, low=0.5, high=1.5)),
    ('norm', lambda x: nd.norm(x), rnd(3, 4)),
    ('reshape', lambda x: x.reshape((0, -1)), rnd(3, 4, 2)),
    ('reshape_codes', lambda x: x.reshape((-3, 2)), rnd(3, 4, 2)),
    ('transpose', lambda x: x.transpose((2, 0, 1)) * nd.arange(3, ctx=x.context, dtype='float64').reshape((1, 1, 3)),
     rnd(3, 3, 2)),
    ('T', lambda x: x.T, rnd(3, 4)),
    ('expand_dims', lambda x: nd.expand_dims(x, 1), rnd(3, 4)),
    ('squeeze', lambda x: nd.squeeze(x, axis=1), rnd(3, 1, 4)),
    ('flip', lambda x: nd.flip(x, 1), rnd(3, 4)),
    ('flatten', nd.flatten, rnd(2, 3, 4)),
    ('broadcast_to', lambda x: nd.broadcast_to(x, (2, 3, 4)), rnd(3, 1)),
    ('tile', lambda x: nd.tile(x, (2, 3)), rnd(2, 3)),
    ('repeat', lambda x: nd.repeat(x, 2, axis=1), rnd(2, 3)),
    ('pad_constant', lambda x: nd.pad(x, ((1, 0), (2, 1))), rnd(2, 3)),
    ('pad_reflect', lambda x: nd.pad(x, ((1, 1), (2, 1)), mode='reflect'), rnd(3, 4)),
    ('split', lambda x: nd.split(x, 2, axis=1), rnd(2, 4)),
    ('split_squeeze', lambda x: nd.split(x, 3, axis=0, squeeze_axis=True), rnd(3, 4)),
    ('getitem_int', lambda x: x[1], rnd(3, 4)),
    ('getitem_slice', lambda x: x[:, 1:3], rnd(3, 4)),
    ('getitem_step', lambda x: x[::2, ::-1], rnd(3, 4)),
    ('getitem_array', lambda x: x[xpnet.array([0, 2, 0], ctx=x.context)], rnd(3, 4)),
    ('getitem_mixed', lambda x: x[xpnet.array([1, 1], ctx=x.context), 1:], rnd(3, 4)),
    ('getitem_newaxis', lambda x: x[None, :, 0], rnd(3, 4)),
    ('pow_scalar', lambda x: x ** 3, rnd(3, 4)),
    ('rpow_scalar', lambda x: 2.0 ** x, rnd(3, 4)),
    ('rsub_scalar', lambda x: 1.0 - x, rnd(3, 4)),
    ('rdiv_scalar', lambda x: 2.0 / x, rnd(3, 4, low=0.5, high=2)),
    ('mul_scalar', lambda x: x * 3 + 1 - 0.5, rnd(3, 4)),
    ('leaky_relu', lambda x: nd.LeakyReLU(x, act_type='leaky', slope=0.2), away_from_zero(3, 4)),
]


@pytest.mark.parametrize('name,fn,x', UNARY, ids=[u[0] for u in UNARY])
def test_unary_grad(name, fn, x, ctx):
    check_grad(fn, [x], ctx=ctx)


BINARY = [
    ('add_bcast', lambda a, b: a + b, rnd(3, 4), rnd(4)),
    ('sub_bcast', lambda a, b: a - b, rnd(3, 1), rnd(1, 4)),
    ('mul_bcast', lambda a, b: a * b, rnd(2, 3, 4), rnd(3, 1)),
    ('div_bcast', lambda a, b: a / b, rnd(3, 4), rnd(4, low=0.5, high=2)),
    ('pow', lambda a, b: a ** b, rnd(3, 4, low=0.5, high=2), rnd(3, 4)),
    ('maximum', nd.maximum, rnd(3, 4), rnd(3, 4)),
    ('minimum', nd.minimum, rnd(3, 4), rnd(1, 4)),
    ('dot', nd.dot, rnd(3, 4), rnd(4, 5)),
    ('dot_nd', nd.dot, rnd(2, 3, 4), rnd(4, 5)),
    ('dot_ta', lambda a, b: nd.dot(a, b, transpose_a=True), rnd(4, 3), rnd(4, 5)),
    ('dot_tb', lambda a, b: nd.dot(a, b, transpose_b=True), rnd(3, 4), rnd(5, 4)),
    ('batch_dot', nd.batch_dot, rnd(2, 3, 4), rnd(2, 4, 5)),
    ('batch_dot_t', lambda a, b: nd.batch_dot(a, b, transpose_a=True, transpose_b=True),
     rnd(2, 4, 3), rnd(2, 5, 4)),
    ('matmul_bcast', lambda a, b: a @ b, rnd(2, 3, 4), rnd(4, 2)),
    ('matmul_vec', lambda a, b: a @ b, rnd(4), rnd(4, 2)),
    ('concat', lambda a, b: nd.concat(a, b, dim=1), rnd(2, 3), rnd(2, 2)),
    ('stack', lambda a, b: nd.stack(a, b, axis=1), rnd(2, 3), rnd(2, 3)),
    ('where', lambda a, b: nd.where(a > 0, a, b), rnd(3, 4), rnd(3, 4)),
    ('prelu', lambda a, b: nd.LeakyReLU(a, b, act_type='prelu'), away_from_zero(2, 3, 2),
     rnd(3)),
]


@pytest.mark.parametrize('name,fn,a,b', BINARY, ids=[b[0] for b in BINARY])
def test_binary_grad(name, fn, a, b, ctx):
    check_grad(fn, [a, b], ctx=ctx)


def test_fully_connected_grad(ctx):
    check_grad(lambda x, w, b: nd.FullyConnected(x, w, b), [rnd(3, 2, 2), rnd(5, 4), rnd(5)],
               ctx=ctx)
    check_grad(lambda x, w, b: nd.FullyConnected(x, w, b, flatten=False),
               [rnd(3, 2, 4), rnd(5, 4), rnd(5)], ctx=ctx)


@pytest.mark.parametrize('act', ['relu', 'tanh', 'sigmoid'])
def test_fully_connected_fused_activation_grad(act, ctx):
    from xpnet.ops import fully_connected
    x, w, b = rnd(4, 3), rnd(5, 3), rnd(5)
    check_grad(lambda x, w, b: fully_connected(x, w, b, act=act), [x, w, b], ctx=ctx)
    check_grad(lambda x, w, b: fully_connected(x, w, b, flatten=False, act=act),
               [rnd(2, 2, 3), w, b], ctx=ctx)
    # Same numbers as the unfused product followed by the activation.
    xs = [xpnet.array(a, ctx=ctx) for a in (x, w, b)]
    fused = fully_connected(*xs, act=act).asnumpy()
    plain = nd.Activation(fully_connected(*xs), act).asnumpy()
    np.testing.assert_allclose(fused, plain, rtol=1e-6)


def test_index_ops_grad(ctx):
    idx = np.array([2, 0, 2, 1])
    check_grad(lambda a, i: nd.take(a, i, axis=0), [rnd(3, 4), idx], ctx=ctx, wrt=[0])
    check_grad(lambda a, i: nd.take(a, i, axis=1), [rnd(2, 3), idx], ctx=ctx, wrt=[0])
    check_grad(lambda a, i: nd.pick(a, i, axis=1), [rnd(4, 3), idx], ctx=ctx, wrt=[0])
    check_grad(lambda a, i: nd.pick(a, i, axis=0, keepdims=True), [rnd(3, 4), idx], ctx=ctx,
               wrt=[0])
    check_grad(lambda i, w: nd.Embedding(i, w), [idx.reshape(2, 2), rnd(3, 5)], ctx=ctx,
               wrt=[1])


def test_loss_ops_grad(ctx):
    label = np.array([0, 2, 1])
    check_grad(lambda p, y: nd.softmax_cross_entropy(p, y), [rnd(3, 4), label], ctx=ctx,
               wrt=[0])
    dense = np.abs(rnd(3, 4))
    dense /= dense.sum(axis=1, keepdims=True)
    check_grad(lambda p, y: nd.softmax_cross_entropy(p, y, sparse_label=False),
               [rnd(3, 4), dense], ctx=ctx)
    from xpnet.ops import sigmoid_binary_cross_entropy as bce
    z = (rnd(3, 4) > 0).astype(float)
    check_grad(lambda p, y: bce(p, y), [rnd(3, 4, low=-3, high=3), z], ctx=ctx)
    check_grad(lambda p, y: bce(p, y, pos_weight=2.0), [rnd(3, 4, low=-3, high=3), z],
               ctx=ctx)
    check_grad(lambda p, y: bce(p, y, from_sigmoid=True), [rnd(3, 4, low=0.1, high=0.9), z],
               ctx=ctx, wrt=[0])


def test_normalize_grad(ctx):
    from xpnet.ops import normalize
    x = rnd(3, 4, 5)
    check_grad(lambda x, g, b: normalize(x, g, b, (0, 2), (1, 4, 1), 1e-5)[0],
               [x, rnd(4), rnd(4)], ctx=ctx, rtol=1e-4)
    check_grad(lambda x, g, b: normalize(x, g, b, (2,), (1, 2, 1), 1e-5,
                                         data_shape=(3, 2, 10))[0],
               [x, rnd(2), rnd(2)], ctx=ctx, rtol=1e-4)


def test_batch_norm_inference_grad(ctx):
    from xpnet.ops import batch_norm
    rm = xpnet.array(rnd(4), ctx=ctx, dtype='float64')
    rv = xpnet.array(rnd(4, low=0.5, high=2), ctx=ctx, dtype='float64')
    check_grad(lambda x, g, b: batch_norm(x, g, b, rm, rv, training=False),
               [rnd(3, 4, 2), rnd(4), rnd(4)], ctx=ctx)


def test_astype_and_copy_grad(ctx):
    # float32 rounding makes tiny steps meaningless; the function is linear, so big ones are exact
    check_grad(lambda x: x.astype('float32').astype('float64') * 2, [rnd(3)], ctx=ctx,
               eps=1e-2, rtol=1e-4)
    check_grad(lambda x: x.as_in_context(xpnet.cpu(1)).as_in_context(x.context) * 3, [rnd(3)],
               ctx=ctx)
