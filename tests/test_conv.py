"""Convolution layers: MXNet 1.9.1 parity (tests/data/conv.npz), channels-last layouts,
float64 gradient checks, Gluon's shape formulas and the errors a user can cause."""
import json

import numpy as np
import pytest

import xpnet
from xpnet import autograd, nd, ops
from xpnet import layers as nn
from conftest import oracle
from gradcheck import check_grad, check_layer_grad

DATA = oracle('conv.npz')
CASES = sorted({k.split(':')[0] for k in DATA})
LAST = {1: 'NWC', 2: 'NHWC', 3: 'NDHWC'}


def case(name):
    args = json.loads(str(DATA[name + ':args']))
    arrays = {k.split(':')[1]: v for k, v in DATA.items() if k.startswith(name + ':')}
    return args['cls'], args['kwargs'], arrays


def to_last(a):
    return np.ascontiguousarray(np.moveaxis(a, 1, -1))


def run_layer(layer, x, dy, ctx):
    xa = xpnet.array(x, ctx=ctx)
    xa.attach_grad()
    with autograd.record():
        y = layer(xa)
    y.backward(xpnet.array(dy, ctx=ctx))
    return y.asnumpy(), xa.grad.asnumpy()


def assert_close(a, b, what):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5, err_msg=what)


@pytest.mark.parametrize('name', CASES)
def test_mxnet_parity(name, ctx):
    cls, kwargs, a = case(name)
    layer = getattr(nn, cls)(**kwargs)
    layer.initialize(ctx=ctx)
    layer(xpnet.array(a['x'], ctx=ctx))
    layer.weight.set_data(a['weight'])
    if 'bias' in a:
        layer.bias.set_data(a['bias'])
    y, gx = run_layer(layer, a['x'], a['dy'], ctx)
    assert_close(y, a['y'], f'{name}: output')
    assert_close(gx, a['gx'], f'{name}: input gradient')
    assert_close(layer.weight.grad(ctx).asnumpy(), a['gweight'], f'{name}: weight gradient')
    if 'bias' in a:
        assert_close(layer.bias.grad(ctx).asnumpy(), a['gbias'], f'{name}: bias gradient')


@pytest.mark.parametrize('name', CASES)
def test_channels_last_matches_oracle(name, ctx):
    """MXNet runs NHWC only on GPU; its numbers equal the channels-first op on transposed
    data, with the weight's in/groups (transposed: channels/groups) axis moved last."""
    cls, kwargs, a = case(name)
    nd_ = a['x'].ndim - 2
    layer = getattr(nn, cls)(layout=LAST[nd_], **kwargs)
    layer.initialize(ctx=ctx)
    layer(xpnet.array(to_last(a['x']), ctx=ctx))
    assert layer.weight.shape == to_last(a['weight']).shape
    layer.weight.set_data(to_last(a['weight']))
    if 'bias' in a:
        layer.bias.set_data(a['bias'])
    y, gx = run_layer(layer, to_last(a['x']), to_last(a['dy']), ctx)
    assert_close(y, to_last(a['y']), f'{name}: output')
    assert_close(gx, to_last(a['gx']), f'{name}: input gradient')
    assert_close(layer.weight.grad(ctx).asnumpy(), to_last(a['gweight']), f'{name}: weight grad')


GRAD_CASES = [
    (nn.Conv1D, dict(channels=3, kernel_size=3, strides=2, padding=1), (2, 2, 7)),
    (nn.Conv1D, dict(channels=4, kernel_size=2, dilation=2, groups=2, layout='NWC'), (2, 6, 4)),
    (nn.Conv2D, dict(channels=2, kernel_size=(3, 2), strides=(2, 1), padding=(1, 1),
                     dilation=(1, 2)), (2, 3, 5, 6)),
    (nn.Conv2D, dict(channels=4, kernel_size=3, groups=4, padding=1, layout='NHWC'),
     (1, 4, 4, 4)),
    (nn.Conv2D, dict(channels=2, kernel_size=2, strides=3, activation='tanh'), (2, 2, 7, 5)),
    (nn.Conv3D, dict(channels=2, kernel_size=(2, 1, 2), strides=(1, 2, 1), padding=(1, 0, 0)),
     (1, 2, 3, 4, 3)),
    (nn.Conv3D, dict(channels=2, kernel_size=2, layout='NDHWC'), (1, 3, 3, 3, 2)),
    (nn.Conv1DTranspose, dict(channels=2, kernel_size=3, strides=2, padding=1,
                              output_padding=1), (2, 3, 4)),
    (nn.Conv2DTranspose, dict(channels=4, kernel_size=(3, 2), strides=(2, 3), groups=2,
                              output_padding=(1, 2), padding=(1, 0)), (1, 2, 3, 3)),
    (nn.Conv2DTranspose, dict(channels=2, kernel_size=3, dilation=2, layout='NHWC'),
     (1, 3, 3, 2)),
    (nn.Conv3DTranspose, dict(channels=2, kernel_size=2, strides=2, padding=(0, 1, 0)),
     (1, 2, 2, 3, 2)),
]


@pytest.mark.parametrize('cls,kwargs,shape', GRAD_CASES,
                         ids=[f'{c.__name__}-{i}' for i, (c, _, _) in enumerate(GRAD_CASES)])
def test_layer_gradients(cls, kwargs, shape, ctx):
    layer = cls(**kwargs)
    layer.initialize(init=xpnet.init.Normal(0.5), ctx=ctx)
    x = np.random.default_rng(3).standard_normal(shape)
    layer(xpnet.array(x, ctx=ctx))
    layer.bias.set_data(np.random.default_rng(4).standard_normal(layer.bias.shape))
    check_layer_grad(layer, [x], ctx=ctx)


def test_op_gradients_no_bias_and_partial(ctx):
    rng = np.random.default_rng(5)
    x, w = rng.standard_normal((2, 4, 5, 5)), rng.standard_normal((6, 2, 3, 3))
    check_grad(lambda x, w: ops.convolution(x, w, None, 2, 1, 1, groups=2), [x, w], ctx=ctx)
    # only the weight differentiated: the data path must not be needed
    check_grad(lambda x, w: ops.convolution(x, w, pad=1), [x, rng.standard_normal((3, 4, 3, 3))],
               ctx=ctx, wrt=[1])


@pytest.mark.parametrize('nd_', [1, 2, 3])
def test_shape_formula_floor(nd_):
    rng = np.random.default_rng(nd_)
    for size, k, s, p, d in [(9, 3, 2, 1, 1), (10, 2, 3, 0, 1), (11, 3, 2, 2, 3), (7, 1, 4, 0, 1)]:
        cls = [nn.Conv1D, nn.Conv2D, nn.Conv3D][nd_ - 1]
        layer = cls(2, k, strides=s, padding=p, dilation=d)
        layer.initialize()
        y = layer(nd.array(rng.standard_normal((1, 1) + (size,) * nd_)))
        expect = (size + 2 * p - d * (k - 1) - 1) // s + 1
        assert y.shape == (1, 2) + (expect,) * nd_


@pytest.mark.parametrize('nd_', [1, 2, 3])
def test_transpose_shape_formula(nd_):
    cls = [nn.Conv1DTranspose, nn.Conv2DTranspose, nn.Conv3DTranspose][nd_ - 1]
    for size, k, s, p, a, d in [(4, 3, 2, 1, 1, 1), (3, 4, 2, 1, 0, 1), (5, 3, 1, 0, 0, 2)]:
        layer = cls(3, k, strides=s, padding=p, output_padding=a, dilation=d)
        layer.initialize()
        y = layer(nd.ones((2, 2) + (size,) * nd_))
        expect = (size - 1) * s - 2 * p + d * (k - 1) + a + 1
        assert y.shape == (2, 3) + (expect,) * nd_


def test_deferred_in_channels_and_weight_layouts():
    c = nn.Conv2D(8, (3, 2), groups=2)
    assert c.weight.shape == (8, 0, 3, 2)
    c.initialize()
    c(nd.ones((1, 6, 5, 5)))
    assert c.weight.shape == (8, 3, 3, 2)
    c = nn.Conv2D(8, 3, layout='NHWC', in_channels=4, groups=2)
    assert c.weight.shape == (8, 3, 3, 2)
    t = nn.Conv2DTranspose(6, 3, groups=3)
    t.initialize()
    assert t(nd.ones((1, 9, 4, 4))).shape == (1, 6, 6, 6)
    assert t.weight.shape == (9, 2, 3, 3)
    t = nn.Conv3DTranspose(4, 2, layout='NDHWC', in_channels=2)
    assert t.weight.shape == (2, 2, 2, 2, 4)
    assert list(nn.Conv1D(2, 3).collect_params()) == ['weight', 'bias']
    assert list(nn.Conv1D(2, 3, use_bias=False).collect_params()) == ['weight']


def test_depthwise_equals_per_channel_convolution():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 6, 6)).astype(np.float32)
    c = nn.Conv2D(3, 3, groups=3, padding=1, use_bias=False)
    c.initialize()
    y = c(nd.array(x)).asnumpy()
    w = c.weight.data().asnumpy()
    for ch in range(3):
        single = ops.convolution(nd.array(x[:, ch:ch + 1]), nd.array(w[ch:ch + 1]), pad=1)
        np.testing.assert_allclose(y[:, ch:ch + 1], single.asnumpy(), rtol=1e-5, atol=1e-6)


def test_float32_stays_float32(ctx):
    c = nn.Conv2D(4, 3, padding=1)
    c.initialize(ctx=ctx)
    x = xpnet.array(np.ones((2, 3, 5, 5)), ctx=ctx)
    x.attach_grad()
    with autograd.record():
        y = c(x)
    y.backward()
    assert y.dtype == np.float32 and x.grad.dtype == np.float32
    assert c.weight.grad(ctx).dtype == np.float32


def test_repr():
    assert repr(nn.Conv2D(16, 3, padding=1, in_channels=3)) == \
        'Conv2D(3 -> 16, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1))'
    assert repr(nn.Conv1DTranspose(4, 2, strides=2, output_padding=1, use_bias=False)) == \
        'Conv1DTranspose(None -> 4, kernel_size=(2,), stride=(2,), output_padding=(1,), ' \
        'bias=False)'


@pytest.mark.parametrize('make,shape,match', [
    (lambda: nn.Conv2D(4, 5), (1, 3, 3, 3), r'Conv2D: kernel \(5, 5\).*larger than the padded'),
    (lambda: nn.Conv2D(4, 3, groups=2), (1, 3, 5, 5), r'Conv2D: input has 3 channels.*groups=2'),
    (lambda: nn.Conv2D(4, 3), (3, 5, 5), r'Conv2D: expected a 4-D input for layout NCHW.*'
                                         r'\(3, 5, 5\)'),
    (lambda: nn.Conv1D(4, 3, layout='NWC'), (1, 3, 5, 5), r'Conv1D: expected a 3-D input'),
    (lambda: nn.Conv3DTranspose(2, 2), (1, 2, 3, 3), r'Conv3DTranspose: expected a 5-D'),
    (lambda: nn.Conv2D(4, 3, in_channels=2), (1, 3, 5, 5), r'Conv2D: input has 3 channels'),
])
def test_bad_input_raises(make, shape, match):
    layer = make()
    layer.initialize()
    with pytest.raises(ValueError, match=match):
        layer(nd.ones(shape))


@pytest.mark.parametrize('make,match', [
    (lambda: nn.Conv2D(5, 3, groups=2), r'Conv2D: channels=5 is not divisible by groups=2'),
    (lambda: nn.Conv2D(4, 3, in_channels=3, groups=2), r'in_channels=3 is not divisible'),
    (lambda: nn.Conv2D(4, 3, layout='NCW'), r"Conv2D: layout must be one of \['NCHW', 'NHWC'\]"),
    (lambda: nn.Conv3D(4, (3, 3)), r'Conv3D: kernel_size must be an int or a tuple/list of 3'),
    (lambda: nn.Conv2D(4, 3, strides=0), r'Conv2D: every strides must be >= 1'),
    (lambda: nn.Conv2DTranspose(4, 3, output_padding=(1, 1, 1)), r'output_padding must be'),
])
def test_bad_construction_raises(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_bad_output_padding_raises():
    t = nn.Conv2DTranspose(2, 3, strides=2, output_padding=2)
    t.initialize()
    with pytest.raises(ValueError, match='output_padding'):
        t(nd.ones((1, 2, 3, 3)))


# ---- MXNet operator names (xpnet.nd, the F of hybrid_forward) -------------------------------

class _FConv(nn.HybridBlock):
    def __init__(self):
        super().__init__()
        self.weight = xpnet.layers.Parameter('weight', shape=(4, 3, 3, 3))
        self.bias = xpnet.layers.Parameter('bias', shape=(4,), init='zeros')

    def hybrid_forward(self, F, x, weight, bias):
        y = F.Convolution(x, weight, bias, kernel=(3, 3), stride=(2, 2), pad=(1, 1),
                          num_filter=4)
        y = F.Pooling(y, kernel=(2, 2), pool_type='avg', pooling_convention='full',
                      stride=(1, 1))
        return F.Deconvolution(y, weight, kernel=(3, 3), stride=(2, 2), num_filter=3)


def test_nd_operator_names_in_hybrid_forward():
    block = _FConv()
    block.initialize()
    x = nd.array(np.random.default_rng(0).standard_normal((2, 3, 8, 8)))
    w = block.weight.data()
    y = ops.convolution(x, w, block.bias.data(), 2, 1)
    y = ops.pooling(y, 2, 1, pool_type='avg', ceil_mode=True)
    expect = ops.deconvolution(y, w, None, 2)      # MXNet's Deconvolution: no_bias=True
    np.testing.assert_allclose(block(x).asnumpy(), expect.asnumpy(), rtol=1e-6)
    # MXNet's Pooling op (unlike the Gluon layers) defaults to stride 1
    assert nd.Pooling(x, kernel=(2, 2)).shape == (2, 3, 7, 7)
    assert nd.Pooling(x, global_pool=True, pool_type='avg').shape == (2, 3, 1, 1)
    with pytest.raises(ValueError, match='pooling_convention'):
        nd.Pooling(x, kernel=(2, 2), pooling_convention='same')


# ---- the core's mechanisms -----------------------------------------------------------------

def test_outputs_are_channels_last_in_memory():
    """Chained layers read each other's outputs without transposing copies."""
    x = nd.ones((2, 3, 6, 6))
    c = nn.Conv2D(4, 3, padding=1)
    c.initialize()
    y = c(x)
    assert y.shape == (2, 4, 6, 6)
    assert y._data.transpose(0, 2, 3, 1).flags.c_contiguous
    p = nn.MaxPool2D()(y)
    assert p._data.transpose(0, 2, 3, 1).flags.c_contiguous


def test_pooled_columns_are_reused_and_safe(monkeypatch):
    from xpnet.backend import memory
    monkeypatch.setattr(memory.scratch, 'min_bytes', 1)      # pool even tiny buffers
    memory.scratch.clear()
    rng = np.random.default_rng(0)
    x = nd.array(rng.standard_normal((2, 3, 7, 7)))
    w = nd.array(rng.standard_normal((4, 3, 3, 3)))
    w.attach_grad()

    def step():
        with autograd.record():
            y = ops.convolution(x, w, pad=1)
        y.backward(nd.array(np.arange(y.size, dtype=np.float32).reshape(y.shape) % 5))
        return w.grad.asnumpy().copy()
    first = step()
    step()          # (the gradient bound to w holds a block until the next one replaces it)
    blocks = memory.scratch.stats()['blocks']
    second = step()
    assert memory.scratch.stats()['blocks'] == blocks       # the same blocks again
    np.testing.assert_array_equal(first, second)
    # A retained graph keeps its columns: a second backward gives the same gradient.
    with autograd.record():
        y = ops.convolution(x, w, pad=1)
    y.backward(retain_graph=True)
    g1 = w.grad.asnumpy().copy()
    other = nd.array(rng.standard_normal((2, 3, 7, 7)))
    ops.convolution(other, w, pad=1)                    # would overwrite a released buffer
    y.backward()
    np.testing.assert_array_equal(w.grad.asnumpy(), g1)
    memory.scratch.clear()


def test_im2col_without_stride_tricks_matches(monkeypatch, ctx):
    """Array modules without as_strided take the per-offset copy path."""
    from xpnet.ops import _im2col as core
    rng = np.random.default_rng(1)
    x, w = rng.standard_normal((2, 4, 6, 5)), rng.standard_normal((6, 2, 3, 2))
    args = dict(stride=(2, 1), pad=(1, 0), dilate=(1, 2), groups=2)
    expect = ops.convolution(xpnet.array(x, ctx=ctx), xpnet.array(w, ctx=ctx), **args)
    monkeypatch.setattr(core, '_as_strided', lambda *a: None)
    got = ops.convolution(xpnet.array(x, ctx=ctx), xpnet.array(w, ctx=ctx), **args)
    np.testing.assert_allclose(got.asnumpy(), expect.asnumpy(), rtol=1e-5, atol=1e-6)
    check_grad(lambda x, w: ops.convolution(x, w, **args), [x, w], ctx=ctx)


@pytest.mark.parametrize('groups', [1, 2])
def test_one_by_one_convolution(groups, ctx):
    rng = np.random.default_rng(2)
    x, w = rng.standard_normal((2, 4, 3, 5)), rng.standard_normal((6, 4 // groups, 1, 1))
    y = ops.convolution(xpnet.array(x, ctx=ctx), xpnet.array(w, ctx=ctx), groups=groups)
    xg = x.reshape(2, groups, 4 // groups, 3, 5)
    wg = w.reshape(groups, 6 // groups, 4 // groups)
    expect = np.einsum('gok,ngkhw->ngohw', wg, xg).reshape(2, 6, 3, 5)
    np.testing.assert_allclose(y.asnumpy(), expect, rtol=1e-5, atol=1e-5)
    check_grad(lambda x, w: ops.convolution(x, w, groups=groups), [x, w], ctx=ctx)


def test_float64_input_meets_float32_weight():
    c = nn.Conv1D(2, 3)
    c.initialize()
    y = c(nd.array(np.ones((1, 2, 5)), dtype='float64'))
    assert y.dtype == np.float32
