"""Values of the ``xpnet.nd`` functions (gradients are in test_ops_grad.py), against NumPy
written out by hand, on every backend."""
import numpy as np
import pytest

import xpnet
from xpnet import nd


def test_creation(ctx):
    assert nd.zeros((2, 3), ctx=ctx).asnumpy().tolist() == [[0] * 3] * 2
    assert nd.ones(4, ctx=ctx).dtype == np.float32
    assert nd.full((2,), 7, ctx=ctx).asnumpy().tolist() == [7, 7]
    assert nd.empty((3, 1), ctx=ctx).shape == (3, 1)
    a = nd.arange(5, ctx=ctx)
    assert a.asnumpy().tolist() == [0, 1, 2, 3, 4] and a.dtype == np.float32
    assert nd.arange(2, 8, 2, ctx=ctx).asnumpy().tolist() == [2, 4, 6]
    assert nd.zeros_like(a).asnumpy().sum() == 0 and nd.ones_like(a).asnumpy().sum() == 5
    assert nd.zeros((2,), ctx=ctx, dtype='int32').dtype == np.int32


def test_shape_functions(ctx):
    a = nd.array(np.arange(6).reshape(2, 3), ctx=ctx, dtype='float32')
    b = nd.ones((2, 1), ctx=ctx)
    assert nd.concat(a, b, dim=1).shape == (2, 4)
    assert nd.concat(a, a, dim=0).shape == (4, 3)
    assert nd.stack(a, a, axis=2).shape == (2, 3, 2)
    parts = nd.split(a, num_outputs=3, axis=1)
    assert len(parts) == 3 and parts[2].asnumpy().tolist() == [[2], [5]]
    assert nd.split(a, 3, axis=1, squeeze_axis=True)[0].shape == (2,)
    with pytest.raises(ValueError, match='split'):
        nd.split(a, 2, axis=1)
    assert nd.expand_dims(a, 0).shape == (1, 2, 3)
    assert nd.squeeze(nd.ones((1, 3, 1), ctx=ctx)).shape == (3,)
    assert nd.flip(a, 1).asnumpy().tolist() == [[2, 1, 0], [5, 4, 3]]


def test_index_functions(ctx):
    a = nd.array([[1., 5., 3.], [4., 2., 6.]], ctx=ctx)
    idx = nd.array([1, 2], ctx=ctx)
    assert nd.pick(a, idx, axis=1).asnumpy().tolist() == [5, 6]
    assert nd.pick(a, idx, axis=1, keepdims=True).shape == (2, 1)
    assert nd.take(a, nd.array([1, 0, 1], ctx=ctx)).asnumpy().tolist() == \
        [[4, 2, 6], [1, 5, 3], [4, 2, 6]]
    assert nd.take(a, nd.array([5], ctx=ctx)).asnumpy().tolist() == [[4, 2, 6]]  # clip
    oh = nd.one_hot(nd.array([0, 2], ctx=ctx), 3)
    assert oh.asnumpy().tolist() == [[1, 0, 0], [0, 0, 1]] and oh.dtype == np.float32
    assert nd.one_hot(nd.array([1], ctx=ctx), 2, on_value=5, off_value=-1).asnumpy().tolist() \
        == [[-1, 5]]


def test_math_functions(ctx):
    x = np.array([[-2., -0.5, 0.], [0.5, 1., 3.]], dtype=np.float32)
    a = nd.array(x, ctx=ctx)
    close = np.testing.assert_allclose
    close(nd.relu(a).asnumpy(), np.maximum(x, 0))
    close(nd.sigmoid(a).asnumpy(), 1 / (1 + np.exp(-x)), rtol=1e-6)
    close(nd.tanh(a).asnumpy(), np.tanh(x), rtol=1e-6)
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    close(nd.softmax(a).asnumpy(), e / e.sum(axis=-1, keepdims=True), rtol=1e-6)
    close(nd.log_softmax(a, axis=0).asnumpy(),
          x - np.log(np.exp(x).sum(axis=0, keepdims=True)), rtol=1e-5)
    close(nd.exp(a).asnumpy(), np.exp(x), rtol=1e-6)
    close(nd.abs(a).asnumpy(), np.abs(x))
    close(nd.sqrt(nd.abs(a)).asnumpy(), np.sqrt(np.abs(x)), rtol=1e-6)
    close(nd.log(nd.abs(a) + 1).asnumpy(), np.log(np.abs(x) + 1), rtol=1e-6)
    close(nd.clip(a, -1, 1).asnumpy(), np.clip(x, -1, 1))
    close(nd.maximum(a, 0.2).asnumpy(), np.maximum(x, 0.2))
    close(nd.minimum(a, nd.zeros((2, 3), ctx=ctx)).asnumpy(), np.minimum(x, 0))
    close(nd.where(a > 0, a, -a).asnumpy(), np.abs(x))
    s = nd.sigmoid(nd.array([-1000., 1000.], ctx=ctx)).asnumpy()
    assert 0 <= s[0] < 1e-37 and s[1] == 1      # no overflow warning, no NaN
    close(nd.dot(a, a.T).asnumpy(), x @ x.T, rtol=1e-6)
    b3 = np.random.default_rng(0).standard_normal((2, 3, 4)).astype(np.float32)
    close(nd.batch_dot(nd.array(b3, ctx=ctx), nd.array(b3, ctx=ctx), transpose_b=True).asnumpy(),
          b3 @ b3.transpose(0, 2, 1), rtol=1e-5)


def test_large_softmax_is_stable(ctx):
    a = nd.array([[1000., 1001.], [-1000., -1001.]], ctx=ctx)
    out = nd.softmax(a).asnumpy()
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out.sum(axis=1), 1, rtol=1e-6)
    assert np.isfinite(nd.log_softmax(a).asnumpy()).all()


def test_context_objects():
    assert xpnet.cpu(0) == xpnet.Context('cpu', 0) and xpnet.cpu(0) is xpnet.cpu(0)
    assert xpnet.cpu(1) != xpnet.cpu(0)
    assert xpnet.cpu(2).device_type == 'cpu' and xpnet.cpu(2).device_id == 2
    assert {xpnet.cpu(0): 1}[xpnet.Context('cpu', 0)] == 1
    assert isinstance(xpnet.num_gpus(), int)
    with pytest.raises(ValueError):
        xpnet.Context('tpu', 0)
