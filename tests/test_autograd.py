"""The autograd tape: record/pause, train/predict modes, grad_req, head gradients,
retain_graph, gradient accumulation, broadcasting, and buffer safety."""
import numpy as np
import pytest

import xpnet
from xpnet import autograd, nd


def test_record_pause_and_modes():
    assert not autograd.is_recording() and not autograd.is_training()
    with autograd.record():
        assert autograd.is_recording() and autograd.is_training()
        with autograd.pause():
            assert not autograd.is_recording() and not autograd.is_training()
        with autograd.predict_mode():
            assert autograd.is_recording() and not autograd.is_training()
    with autograd.record(train_mode=False):
        assert autograd.is_recording() and not autograd.is_training()
    with autograd.train_mode():
        assert autograd.is_training() and not autograd.is_recording()
    assert not autograd.is_recording() and not autograd.is_training()


def test_only_recorded_ops_are_taped(ctx):
    x = nd.array([1., 2.], ctx=ctx)
    x.attach_grad()
    y = x * 2                       # outside record: no graph
    with pytest.raises(ValueError, match='recorded'):
        y.backward()
    with autograd.record():
        z = x * 3
        with autograd.pause():
            w = z * 5               # not taped
    assert w._node is None
    z.backward()
    np.testing.assert_array_equal(x.grad.asnumpy(), [3, 3])


def test_nonscalar_head_uses_ones_and_head_grads(ctx):
    x = nd.array([[1., 2.], [3., 4.]], ctx=ctx)
    x.attach_grad()
    with autograd.record():
        y = x * x
    y.backward()
    np.testing.assert_array_equal(x.grad.asnumpy(), 2 * x.asnumpy())
    with autograd.record():
        y = x * x
    y.backward(nd.array([[1., 0.], [0., 2.]], ctx=ctx))
    np.testing.assert_array_equal(x.grad.asnumpy(), [[2, 0], [0, 16]])
    with autograd.record():
        y = x * x
    with pytest.raises(ValueError, match='shape'):
        y.backward(nd.ones((3,), ctx=ctx))


def test_multiple_heads(ctx):
    x = nd.array([1., 2.], ctx=ctx)
    x.attach_grad()
    with autograd.record():
        a = x * 2
        b = x * x
    autograd.backward([a, b], [nd.ones((2,), ctx=ctx), nd.array([1., 10.], ctx=ctx)])
    np.testing.assert_array_equal(x.grad.asnumpy(), [2 + 2, 2 + 40])


def test_grad_req_write_add_null(ctx):
    x = nd.array([1., 2.], ctx=ctx)
    x.attach_grad(grad_req='add')
    for _ in range(3):
        with autograd.record():
            y = (x * x).sum()
        y.backward()
    np.testing.assert_array_equal(x.grad.asnumpy(), 3 * 2 * x.asnumpy())
    x.attach_grad(grad_req='write')
    for _ in range(3):
        with autograd.record():
            y = (x * x).sum()
        y.backward()
    np.testing.assert_array_equal(x.grad.asnumpy(), 2 * x.asnumpy())
    x.attach_grad(grad_req='null')
    assert x.grad is None
    with pytest.raises(ValueError):
        x.attach_grad(grad_req='bogus')


def test_retain_graph(ctx):
    x = nd.array([3.], ctx=ctx)
    x.attach_grad()
    with autograd.record():
        y = x * x * x
    y.backward(retain_graph=True)
    np.testing.assert_allclose(x.grad.asnumpy(), [27.])
    y.backward()
    np.testing.assert_allclose(x.grad.asnumpy(), [27.])
    with pytest.raises(RuntimeError, match='retain_graph'):
        y.backward()


def test_shared_subexpression_accumulates(ctx):
    x = nd.array([2.], ctx=ctx)
    x.attach_grad()
    with autograd.record():
        a = x * 3
        y = a * a + a + x
    y.backward()
    # y = 9x^2 + 3x + x -> 18x + 4
    np.testing.assert_allclose(x.grad.asnumpy(), [40.])


def test_broadcast_gradients_reduce(ctx):
    a = nd.ones((3, 1), ctx=ctx)
    b = nd.ones((4,), ctx=ctx)
    a.attach_grad()
    b.attach_grad()
    with autograd.record():
        y = a * b + b
    y.backward()
    np.testing.assert_array_equal(a.grad.asnumpy(), np.full((3, 1), 4.))
    np.testing.assert_array_equal(b.grad.asnumpy(), np.full((4,), 6.))


def test_gradient_buffers_never_alias(ctx):
    # a + b hands the same gradient array to both leaves; they must not share storage.
    a = nd.ones((3,), ctx=ctx)
    b = nd.ones((3,), ctx=ctx)
    a.attach_grad()
    b.attach_grad()
    with autograd.record():
        y = a + b
    y.backward()
    a.grad[:] = 5
    np.testing.assert_array_equal(b.grad.asnumpy(), 1)
    # A user-provided head gradient is never adopted as a gradient buffer.
    head = nd.array([1., 2., 3.], ctx=ctx)
    with autograd.record():
        y = a * 1 + 0
    y.backward(head)
    head[:] = 0
    np.testing.assert_array_equal(a.grad.asnumpy(), [1, 2, 3])
    # The gradient NDArray object stays the same across steps (Gluon's param.grad() buffer).
    g = a.grad
    with autograd.record():
        (a * 2).backward()
    assert a.grad is g
    np.testing.assert_array_equal(g.asnumpy(), 2)


def test_detach_and_stop_gradient(ctx):
    x = nd.array([1., 2.], ctx=ctx)
    x.attach_grad()
    with autograd.record():
        y = x * x.detach() + nd.stop_gradient(x * 5)
    y.backward()
    np.testing.assert_array_equal(x.grad.asnumpy(), [1, 2])


def test_inplace_on_recorded_array_refused(ctx):
    x = nd.array([1., 2.], ctx=ctx)
    x.attach_grad()
    with autograd.record():
        y = x * 2
        with pytest.raises(RuntimeError, match='in-place'):
            y[0] = 3
        z = y
        z += 1                    # out of place inside record(): z is rebound
    assert z is not y
    x2 = nd.array([1., 2.], ctx=ctx)
    x2 += 1                       # plain in-place outside record
    np.testing.assert_array_equal(x2.asnumpy(), [2, 3])


def test_dtype_rules(ctx):
    f = nd.array([1.5, 2.5], ctx=ctx)
    assert f.dtype == np.float32
    assert (f * 0.5).dtype == np.float32 and (f + np.float64(1)).dtype == np.float32
    i = nd.array(np.array([1, 2]), ctx=ctx)
    assert i.dtype.kind == 'i'
    assert (i * 0.5).dtype == np.float32
    assert (i + f).dtype == np.float32
    assert xpnet.array([[1.0]], dtype='float64').dtype == np.float64
    assert xpnet.array(np.zeros(2, np.float64)).dtype == np.float32
    assert (f == f).dtype == np.float32 and (f > 2).asnumpy().tolist() == [0, 1]
    assert f.argmax().dtype == np.float32


def test_context_mismatch_is_an_error():
    a = nd.ones((2,), ctx=xpnet.cpu(0))
    b = nd.ones((2,), ctx=xpnet.cpu(1))
    with pytest.raises(ValueError, match='different devices'):
        a + b
    c = b.as_in_context(xpnet.cpu(0))
    assert (a + c).context == xpnet.cpu(0)


def test_higher_level_api(ctx):
    x = nd.array([[1., 2.], [3., 4.]], ctx=ctx)
    assert x.shape == (2, 2) and x.ndim == 2 and x.size == 4 and len(x) == 2
    assert x.context == ctx and x.ctx == ctx
    assert x.T.asnumpy().tolist() == [[1, 3], [2, 4]]
    assert x.reshape(4).shape == (4,) and x.reshape((1, -1)).shape == (1, 4)
    assert x.transpose(1, 0).shape == (2, 2)
    assert [r.asnumpy().tolist() for r in x] == [[1, 2], [3, 4]]
    assert x.sum().item() == 10 and x.mean(axis=0).asnumpy().tolist() == [2, 3]
    assert x.max(axis=1, keepdims=True).shape == (2, 1)
    assert float(x[1, 1]) == 4 and x[1, 1].asscalar() == 4
    assert (x @ x).asnumpy().tolist() == [[7, 10], [15, 22]]
    assert x.copyto(xpnet.cpu(1)).context == xpnet.cpu(1)
    y = nd.zeros((2, 2), ctx=ctx)
    x.copyto(y)
    assert y.asnumpy().tolist() == x.asnumpy().tolist()
    with pytest.raises(ValueError):
        x.asscalar()
    with pytest.raises(IndexError):
        x[5]
    assert 'NDArray 2x2 @' in repr(x)


def test_reshape_codes():
    from xpnet.ops import infer_reshape
    assert infer_reshape((2, 3, 4), (0, -1)) == (2, 12)
    assert infer_reshape((2, 3, 4), (-2,)) == (2, 3, 4)
    assert infer_reshape((2, 3, 4), (-3, 4)) == (6, 4)
    assert infer_reshape((2, 12), (0, -4, 3, -1)) == (2, 3, 4)
    assert infer_reshape((2, 3, 4), (0, 0, -1)) == (2, 3, 4)
    with pytest.raises(ValueError):
        nd.ones((2, 3)).reshape((4, -1))


def test_gpu_without_cupy_is_a_clear_error():
    """As in MXNet, gpu(0) is only a name; the first use fails with the install command."""
    if xpnet.num_gpus() > 0:
        pytest.skip('a GPU is present')
    ctx = xpnet.gpu(0)
    assert ctx.device_type == 'gpu' and ctx == xpnet.Context('gpu', 0)
    with pytest.raises(xpnet.backend.DeviceError, match=r'pip install -e "\.\[cuda12\]"'):
        nd.ones((2,), ctx=ctx)
    with pytest.raises(xpnet.backend.DeviceError, match='cuda13'):
        ctx.xp


def test_simulated_device_refuses_host_mixing():
    from xpnet.backend import sim
    a = nd.ones((3,), ctx=sim())
    with pytest.raises(TypeError):
        a.data + np.ones(3)
    with pytest.raises(TypeError):
        np.asarray(a.data)
    np.testing.assert_array_equal(a.asnumpy(), 1)
    np.testing.assert_array_equal((a + np.ones(3)).asnumpy(), 2)   # NDArray moves it explicitly


def test_random_seed_reproducible(ctx):
    xpnet.random.seed(3)
    a = nd.random.uniform(-1, 1, shape=(4,), ctx=ctx).asnumpy()
    b = nd.random.normal(0, 1, shape=(2, 2), ctx=ctx).asnumpy()
    state = xpnet.random.get_state()
    c = nd.random.randint(0, 10, shape=(5,), ctx=ctx).asnumpy()
    xpnet.random.seed(3)
    np.testing.assert_array_equal(a, nd.random.uniform(-1, 1, shape=(4,), ctx=ctx).asnumpy())
    np.testing.assert_array_equal(b, nd.random.normal(0, 1, shape=(2, 2), ctx=ctx).asnumpy())
    xpnet.random.set_state(state)
    np.testing.assert_array_equal(c, nd.random.randint(0, 10, shape=(5,), ctx=ctx).asnumpy())
    assert a.dtype == np.float32 and a.min() >= -1 and a.max() < 1
