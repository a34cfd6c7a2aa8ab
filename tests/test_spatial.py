"""ReflectionPad2D and PixelShuffle1D/2D/3D: MXNet parity (tests/data/conv_spatial.npz),
the seed's shape examples, gradients and errors."""
import json

import numpy as np
import pytest

import xpnet
from xpnet import autograd, nd
from xpnet import layers as nn
from conftest import oracle
from gradcheck import check_layer_grad

DATA = oracle('conv_spatial.npz')
CASES = sorted({k.split(':')[0] for k in DATA})


@pytest.mark.parametrize('name', CASES)
def test_mxnet_parity(name, ctx):
    args = json.loads(str(DATA[name + ':args']))
    arg = args['arg']
    layer = getattr(nn, args['cls'])(tuple(arg) if isinstance(arg, list) else arg)
    x = xpnet.array(DATA[name + ':x'], ctx=ctx)
    x.attach_grad()
    with autograd.record():
        y = layer(x)
    y.backward(xpnet.array(DATA[name + ':dy'], ctx=ctx))
    np.testing.assert_array_equal(y.asnumpy(), DATA[name + ':y'])
    np.testing.assert_allclose(x.grad.asnumpy(), DATA[name + ':gx'], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize('layer,shape,out', [
    (nn.PixelShuffle1D(2), (1, 8, 3), (1, 4, 6)),
    (nn.PixelShuffle2D((2, 3)), (1, 12, 3, 5), (1, 2, 6, 15)),
    (nn.PixelShuffle3D((2, 3, 4)), (1, 48, 3, 5, 7), (1, 2, 6, 15, 28)),
    (nn.ReflectionPad2D(3), (16, 3, 24, 24), (16, 3, 30, 30)),
])
def test_seed_shapes(layer, shape, out):
    assert layer(nd.zeros(shape)).shape == out


def test_pixel_shuffle_places_channels_in_blocks():
    # channel c*f1*f2 + i*f2 + j lands at (h*f1 + i, w*f2 + j) of output channel c
    x = np.arange(1 * 8 * 2 * 2, dtype=np.float32).reshape(1, 8, 2, 2)
    y = nn.PixelShuffle2D(2)(nd.array(x)).asnumpy()
    for c in range(2):
        for i in range(2):
            for j in range(2):
                np.testing.assert_array_equal(y[0, c, i::2, j::2], x[0, c * 4 + i * 2 + j])


def test_reflection_pad_values():
    x = nd.array(np.arange(6, dtype=np.float32).reshape(1, 1, 2, 3))
    y = nn.ReflectionPad2D(1)(x).asnumpy()[0, 0]
    np.testing.assert_array_equal(y[1, :], [1, 0, 1, 2, 1])
    np.testing.assert_array_equal(y[:, 0], [4, 1, 4, 1])


@pytest.mark.parametrize('layer,shape', [
    (nn.ReflectionPad2D(2), (2, 2, 4, 3)),
    (nn.PixelShuffle1D(3), (2, 6, 2)),
    (nn.PixelShuffle2D((1, 2)), (1, 4, 2, 3)),
    (nn.PixelShuffle3D(2), (1, 8, 2, 1, 2)),
])
def test_gradients(layer, shape, ctx):
    check_layer_grad(layer, [np.random.default_rng(0).standard_normal(shape)], ctx=ctx)


@pytest.mark.parametrize('layer,shape,match', [
    (nn.PixelShuffle2D(2), (1, 6, 2, 2), r'PixelShuffle2D: 6 input channels .* not divisible'),
    (nn.PixelShuffle1D(2), (1, 4, 2, 2), r'PixelShuffle1D: expected a 3-D input'),
    (nn.ReflectionPad2D(3), (1, 1, 3, 5), r'ReflectionPad2D: padding 3 must be smaller'),
    (nn.ReflectionPad2D(1), (1, 3, 5), r'ReflectionPad2D: expected a 4-D'),
])
def test_bad_input_raises(layer, shape, match):
    with pytest.raises(ValueError, match=match):
        layer(nd.ones(shape))


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match='PixelShuffle3D: factor'):
        nn.PixelShuffle3D((2, 2))
    with pytest.raises(ValueError, match='ReflectionPad2D: padding'):
        nn.ReflectionPad2D(-1)
