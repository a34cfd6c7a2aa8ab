"""Deformable convolutions v1/v2: MXNet 1.9.1 parity (tests/data/conv_deformable.npz),
finite-difference gradients for input, offsets, mask and weights, border rules, errors."""
import json

import numpy as np
import pytest

import xpnet
from xpnet import autograd, nd, ops
from xpnet import layers as nn
from conftest import oracle
from gradcheck import check_grad, check_layer_grad

DATA = oracle('conv_deformable.npz')
CASES = sorted({k.split(':')[0] for k in DATA})
PARAMS = ('offset_weight', 'offset_bias', 'deformable_conv_weight', 'deformable_conv_bias')


def case(name):
    args = json.loads(str(DATA[name + ':args']))
    return args, {k.split(':')[1]: v for k, v in DATA.items() if k.startswith(name + ':')}


def build(args, a, ctx, layout='NCHW'):
    layer = getattr(nn, args['cls'])(layout=layout, **args['kwargs'])
    layer.initialize(ctx=ctx)
    x = a['x'] if layout == 'NCHW' else np.ascontiguousarray(a['x'].transpose(0, 2, 3, 1))
    layer(xpnet.array(x, ctx=ctx))
    for name in PARAMS:
        if name in a:
            v = a[name]
            if layout == 'NHWC' and v.ndim == 4:
                v = np.ascontiguousarray(v.transpose(0, 2, 3, 1))
            getattr(layer, name).set_data(v)
    return layer, x


@pytest.mark.parametrize('name', CASES)
def test_mxnet_parity(name, ctx):
    args, a = case(name)
    layer, x = build(args, a, ctx)
    xa = xpnet.array(x, ctx=ctx)
    xa.attach_grad()
    with autograd.record():
        y = layer(xa)
    np.testing.assert_allclose(y.asnumpy(), a['y'], rtol=1e-4, atol=1e-5)
    if not args['grad_parity']:
        return
    y.backward(xpnet.array(a['dy'], ctx=ctx))
    np.testing.assert_allclose(xa.grad.asnumpy(), a['gx'], rtol=1e-4, atol=1e-4)
    for p in PARAMS:
        if 'g' + p in a:
            np.testing.assert_allclose(getattr(layer, p).grad(ctx).asnumpy(), a['g' + p],
                                       rtol=1e-4, atol=1e-4, err_msg=p)


@pytest.mark.parametrize('name', ['v1_interior', 'v2_groups'])
def test_nhwc_matches_oracle(name, ctx):
    args, a = case(name)
    layer, x = build(args, a, ctx, layout='NHWC')
    y = layer(xpnet.array(x, ctx=ctx)).asnumpy()
    np.testing.assert_allclose(y.transpose(0, 3, 1, 2), a['y'], rtol=1e-4, atol=1e-5)


def test_parameter_names_shapes_and_order():
    v1 = nn.DeformableConvolution(6, kernel_size=(3, 2), groups=2, num_deformable_group=2,
                                  in_channels=4)
    assert list(v1.collect_params()) == list(PARAMS)
    assert v1.offset_weight.shape == (2 * 6 * 2, 2, 3, 2)
    assert v1.deformable_conv_weight.shape == (6, 2, 3, 2)
    v2 = nn.ModulatedDeformableConvolution(4, kernel_size=3, use_bias=False)
    assert list(v2.collect_params()) == ['deformable_conv_weight', 'offset_weight',
                                         'offset_bias']
    assert v2.offset_weight.shape == (27, 0, 3, 3)
    v2.initialize()
    assert v2(nd.ones((2, 5, 6, 6))).shape == (2, 4, 4, 4)
    assert v2.offset_weight.shape == (27, 5, 3, 3)


def test_zero_offsets_equal_convolution(ctx):
    """Default (zero) offset initialization: v1 and v2 (mask 2*sigmoid(0) = 1) are Conv2D."""
    x = xpnet.array(np.random.default_rng(0).standard_normal((2, 4, 7, 6)), ctx=ctx)
    for cls in (nn.DeformableConvolution, nn.ModulatedDeformableConvolution):
        layer = cls(5, kernel_size=3, strides=2, padding=1, dilation=(1, 2))
        layer.initialize(ctx=ctx)
        conv = nn.Conv2D(5, 3, strides=2, padding=1, dilation=(1, 2))
        conv.initialize(ctx=ctx)
        y = layer(x)
        conv(x)
        conv.weight.set_data(layer.deformable_conv_weight.data(ctx))
        conv.bias.set_data(nd.array(np.arange(5.0)))
        layer.deformable_conv_bias.set_data(nd.array(np.arange(5.0)))
        np.testing.assert_allclose(layer(x).asnumpy(), conv(x).asnumpy(), rtol=1e-5,
                                   atol=1e-5)
        assert y.shape == (2, 5, 4, 2)


def _offsets(shape, rng, scale=1.4):
    # keep every sample away from integer positions, where bilinear sampling has a kink
    off = rng.uniform(-scale, scale, shape)
    frac = off - np.floor(off)
    return np.where(np.abs(frac - 0.5) > 0.4, off + 0.2, off)


@pytest.mark.parametrize('v1', [True, False], ids=['v1', 'v2'])
@pytest.mark.parametrize('cfg', [
    dict(kernel=(3, 3), stride=(1, 1), pad=(1, 1), dilate=(1, 1), groups=1, dg=1),
    dict(kernel=(2, 3), stride=(2, 1), pad=(0, 1), dilate=(1, 2), groups=2, dg=2),
], ids=['3x3', 'odd-groups'])
def test_op_gradients(v1, cfg, ctx):
    """Input, offsets (both rules, samples crossing the image border), mask and weights."""
    rng = np.random.default_rng(1)
    N, C, H, W, O = 1, 4, 4, 5, 2
    kh, kw = cfg['kernel']
    K = kh * kw
    out = [(H + 2 * cfg['pad'][0] - cfg['dilate'][0] * (kh - 1) - 1) // cfg['stride'][0] + 1,
           (W + 2 * cfg['pad'][1] - cfg['dilate'][1] * (kw - 1) - 1) // cfg['stride'][1] + 1]
    x = rng.standard_normal((N, C, H, W))
    w = rng.standard_normal((O, C // cfg['groups'], kh, kw))
    b = rng.standard_normal(O)
    off = _offsets((N, 2 * K * cfg['dg']) + tuple(out), rng)
    args = (cfg['stride'], cfg['pad'], cfg['dilate'], cfg['groups'], cfg['dg'])
    if v1:
        check_grad(lambda x, o, w, b: ops.deformable_convolution(x, o, w, b, *args),
                   [x, off, w, b], ctx=ctx)
    else:
        mask = rng.uniform(0, 2, (N, K * cfg['dg']) + tuple(out))
        check_grad(lambda x, o, m, w, b: ops.modulated_deformable_convolution(
            x, o, m, w, b, *args), [x, off, mask, w, b], ctx=ctx)


@pytest.mark.parametrize('cls', [nn.DeformableConvolution, nn.ModulatedDeformableConvolution])
def test_layer_gradients_through_offset_convolution(cls, ctx):
    layer = cls(2, kernel_size=2, padding=1, offset_weight_initializer=xpnet.init.Normal(0.3),
                offset_bias_initializer=xpnet.init.Uniform(0.9), layout='NHWC')
    layer.initialize(init=xpnet.init.Normal(0.5), ctx=ctx)
    x = np.random.default_rng(2).standard_normal((1, 4, 3, 2))
    layer(xpnet.array(x, ctx=ctx))
    check_layer_grad(layer, [x], ctx=ctx, rtol=1e-4, atol=1e-6)


def test_v1_border_rule_clamps_last_row_and_drops_outside():
    """v1 (MXNet CPU): y in [H-1, H) reads row H-1 unchanged; y < 0 gives 0. v2 interpolates
    toward zero on both sides."""
    H = W = 3
    x = nd.array(np.arange(9.0).reshape(1, 1, H, W) + 1)
    w = nd.ones((1, 1, 1, 1))
    for dy, v1_expect, v2_expect in [(2.5, 7.0, 3.5), (-0.5, 0.0, 0.5)]:
        off = np.zeros((1, 2, 1, 1))
        off[0, 0] = dy
        off = nd.array(off)
        y1 = ops.deformable_convolution(x, off, w, stride=3)
        y2 = ops.modulated_deformable_convolution(x, off, nd.ones((1, 1, 1, 1)), w, stride=3)
        assert y1.asnumpy().item() == pytest.approx(v1_expect)
        assert y2.asnumpy().item() == pytest.approx(v2_expect)


@pytest.mark.parametrize('make,shape,match', [
    (lambda: nn.DeformableConvolution(2, 3, groups=2), (1, 3, 5, 5),
     r'DeformableConvolution: input has 3 channels'),
    (lambda: nn.ModulatedDeformableConvolution(2, 5), (1, 2, 3, 3),
     r'ModulatedDeformableConvolution: kernel \(5, 5\).*larger than the padded input'),
    (lambda: nn.DeformableConvolution(2, 3), (2, 5, 5),
     r'DeformableConvolution: expected a 4-D input for layout NCHW'),
])
def test_bad_input_raises(make, shape, match):
    layer = make()
    layer.initialize()
    with pytest.raises(ValueError, match=match):
        layer(nd.ones(shape))


def test_bad_construction_raises():
    with pytest.raises(ValueError, match=r"DeformableConvolution: layout must be 'NCHW'"):
        nn.DeformableConvolution(2, 3, layout='NCW')
    with pytest.raises(ValueError, match=r'channels=3 is not divisible by groups=2'):
        nn.ModulatedDeformableConvolution(3, 3, groups=2)
    with pytest.raises(ValueError, match=r'offset shape'):
        ops.deformable_convolution(nd.ones((1, 2, 5, 5)), nd.zeros((1, 18, 3, 4)),
                                   nd.ones((2, 2, 3, 3)))
