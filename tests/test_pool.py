"""Pooling layers: MXNet 1.9.1 parity (tests/data/conv_pool.npz), channels-last layouts,
border conventions, gradient checks and errors."""
import json

import numpy as np
import pytest

import xpnet
from xpnet import autograd, nd, ops
from xpnet import layers as nn
from conftest import oracle
from gradcheck import check_grad, check_layer_grad

DATA = oracle('conv_pool.npz')
CASES = sorted({k.split(':')[0] for k in DATA})
LAST = {1: 'NWC', 2: 'NHWC', 3: 'NDHWC'}
FLT_MAX = np.finfo(np.float32).max


def case(name):
    args = json.loads(str(DATA[name + ':args']))
    return args['cls'], args['kwargs'], {k.split(':')[1]: v for k, v in DATA.items()
                                         if k.startswith(name + ':')}


def to_last(a):
    return np.ascontiguousarray(np.moveaxis(a, 1, -1))


def run(layer, x, dy, ctx):
    xa = xpnet.array(x, ctx=ctx)
    xa.attach_grad()
    with autograd.record():
        y = layer(xa)
    y.backward(xpnet.array(dy, ctx=ctx))
    return y.asnumpy(), xa.grad.asnumpy()


def expected(a):
    """MXNet's output with its -FLT_MAX for empty max windows replaced by xpnet's 0."""
    y = a['y'].copy()
    y[y <= -FLT_MAX] = 0
    return y


@pytest.mark.parametrize('name', CASES)
@pytest.mark.parametrize('last', [False, True], ids=['first', 'last'])
def test_mxnet_parity(name, last, ctx):
    cls, kwargs, a = case(name)
    nd_ = a['x'].ndim - 2
    if last:
        layer = getattr(nn, cls)(layout=LAST[nd_], **kwargs)
        y, gx = run(layer, to_last(a['x']), to_last(a['dy']), ctx)
        y, gx = np.moveaxis(y, -1, 1), np.moveaxis(gx, -1, 1)
    else:
        y, gx = run(getattr(nn, cls)(**kwargs), a['x'], a['dy'], ctx)
    np.testing.assert_allclose(y, expected(a), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(gx, a['gx'], rtol=1e-5, atol=1e-6)


def test_empty_ceil_window_is_zero_not_flt_max():
    """The case the module docstring documents: MXNet gives -FLT_MAX, xpnet 0."""
    _, _, a = case('max2d_ceil_empty')
    assert (a['y'] <= -FLT_MAX).any()
    y = nn.MaxPool2D(2, 2, 1, ceil_mode=True)(nd.array(a['x'])).asnumpy()
    assert np.isfinite(y).all()
    assert (y[..., -1, :] == 0).all() and (y[..., :, -1] == 0).all()


def test_ties_go_to_first_maximum():
    x = nd.array(np.array([[[[1., 1.], [1., 1.]]]]))
    x.attach_grad()
    with autograd.record():
        y = nn.MaxPool2D(2)(x)
    y.backward()
    np.testing.assert_array_equal(x.grad.asnumpy()[0, 0], [[1, 0], [0, 0]])
    x = nd.array(np.array([[[0., 2., 2., 1., 2.]]]))
    x.attach_grad()
    with autograd.record():
        y = nn.GlobalMaxPool1D()(x)
    y.backward()
    np.testing.assert_array_equal(x.grad.asnumpy()[0, 0], [0, 1, 0, 0, 0])


@pytest.mark.parametrize('nd_', [1, 2, 3])
@pytest.mark.parametrize('ceil', [False, True])
def test_output_shape_formula(nd_, ceil):
    cls = [nn.MaxPool1D, nn.MaxPool2D, nn.MaxPool3D][nd_ - 1]
    acls = [nn.AvgPool1D, nn.AvgPool2D, nn.AvgPool3D][nd_ - 1]
    for size, k, s, p in [(9, 3, 2, 1), (10, 2, 3, 0), (7, 3, 3, 1), (8, 2, None, 0)]:
        stride = k if s is None else s
        exp = (size + 2 * p - k) / stride
        exp = int(np.ceil(exp) if ceil else np.floor(exp)) + 1
        for c in (cls, acls):
            y = c(k, s, p, ceil_mode=ceil)(nd.ones((1, 2) + (size,) * nd_))
            assert y.shape == (1, 2) + (exp,) * nd_


def test_global_pool_shapes_and_layouts():
    x = nd.array(np.random.default_rng(0).standard_normal((2, 5, 4, 3)))
    assert nn.GlobalAvgPool2D()(x).shape == (2, 5, 1, 1)
    assert nn.GlobalMaxPool2D(layout='NHWC')(x).shape == (2, 1, 1, 3)
    np.testing.assert_allclose(nn.GlobalAvgPool2D(layout='NHWC')(x).asnumpy()[:, 0, 0],
                               x.asnumpy().mean(axis=(1, 2)), rtol=1e-6)
    assert nn.GlobalMaxPool3D()(nd.ones((1, 2, 3, 4, 5))).shape == (1, 2, 1, 1, 1)
    assert nn.GlobalAvgPool1D(layout='NWC')(nd.ones((1, 6, 3))).shape == (1, 1, 3)


GRAD = [
    (nn.MaxPool1D, dict(pool_size=3, strides=2, padding=1, ceil_mode=True), (2, 2, 8)),
    (nn.MaxPool2D, dict(pool_size=(3, 2), strides=(2, 1), padding=(1, 1)), (1, 2, 5, 6)),
    (nn.MaxPool2D, dict(pool_size=2, layout='NHWC'), (1, 4, 6, 3)),
    (nn.MaxPool3D, dict(pool_size=2, strides=(1, 2, 1), ceil_mode=True), (1, 2, 3, 5, 3)),
    (nn.AvgPool1D, dict(pool_size=2, strides=3, ceil_mode=True), (2, 2, 8)),
    (nn.AvgPool2D, dict(pool_size=3, strides=2, padding=1, count_include_pad=False,
                        ceil_mode=True), (1, 2, 6, 5)),
    (nn.AvgPool3D, dict(pool_size=(2, 1, 2), padding=(1, 0, 1), layout='NDHWC'),
     (1, 3, 2, 4, 2)),
    (nn.GlobalMaxPool2D, dict(), (2, 3, 3, 4)),
    (nn.GlobalAvgPool3D, dict(layout='NDHWC'), (1, 2, 3, 2, 3)),
    (nn.GlobalAvgPool1D, dict(), (2, 3, 5)),
]


@pytest.mark.parametrize('cls,kwargs,shape', GRAD,
                         ids=[f'{c.__name__}-{i}' for i, (c, _, _) in enumerate(GRAD)])
def test_gradients(cls, kwargs, shape, ctx):
    # distinct values keep max pooling differentiable at the sample point
    x = np.random.default_rng(1).permutation(int(np.prod(shape))).reshape(shape) * 0.1
    check_layer_grad(cls(**kwargs), [x], ctx=ctx)


def test_sum_pooling_op(ctx):
    x = np.random.default_rng(2).standard_normal((1, 2, 5, 5))
    s = ops.pooling(xpnet.array(x, ctx=ctx), (2, 2), (1, 1), pool_type='sum').asnumpy()
    a = ops.pooling(xpnet.array(x, ctx=ctx), (2, 2), (1, 1), pool_type='avg').asnumpy()
    np.testing.assert_allclose(s, 4 * a, rtol=1e-5)
    check_grad(lambda x: ops.pooling(x, 3, 2, 1, pool_type='sum', ceil_mode=True), [x],
               ctx=ctx)


def test_inference_needs_no_graph(ctx):
    x = xpnet.array(np.random.default_rng(0).standard_normal((2, 3, 6, 6)), ctx=ctx)
    y = nn.MaxPool2D(3, 2, 1)(x)
    assert y.shape == (2, 3, 3, 3) and y._node is None


@pytest.mark.parametrize('make,shape,match', [
    (lambda: nn.MaxPool2D(4), (1, 1, 3, 3), r'MaxPool2D: pool_size \(4, 4\) is larger than '
                                            r'the padded input \(3, 3\)'),
    (lambda: nn.AvgPool1D(2), (1, 3, 4, 4), r'AvgPool1D: expected a 3-D input for layout NCW'),
    (lambda: nn.GlobalMaxPool3D(), (1, 3, 4, 4), r'GlobalMaxPool3D: expected a 5-D input'),
    (lambda: nn.MaxPool2D(layout='NHWC'), (2, 4, 4), r'MaxPool2D: expected a 4-D input'),
])
def test_bad_input_raises(make, shape, match):
    with pytest.raises(ValueError, match=match):
        make()(nd.ones(shape))


@pytest.mark.parametrize('make,match', [
    (lambda: nn.MaxPool2D(2, padding=2), r'MaxPool2D: padding \(2, 2\) must be smaller'),
    (lambda: nn.AvgPool3D(layout='NCHW'), r'AvgPool3D: layout must be one of'),
    (lambda: nn.MaxPool1D((2, 2)), r'MaxPool1D: pool_size must be an int or a tuple/list of 1'),
    (lambda: nn.AvgPool2D(2, strides=0), r'AvgPool2D: every strides must be >= 1'),
])
def test_bad_construction_raises(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_repr():
    assert repr(nn.MaxPool2D()) == ('MaxPool2D(size=(2, 2), stride=(2, 2), padding=(0, 0), '
                                    'ceil_mode=False, global_pool=False, pool_type=max, '
                                    'layout=NCHW)')
