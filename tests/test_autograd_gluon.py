"""``autograd.grad`` and ``autograd.Function`` (MXNet's API): values against closed forms
and finite differences, and that ``grad`` leaves every ``.grad`` buffer alone."""
import numpy as np
import pytest

import xpnet
from xpnet import autograd, nd
from xpnet import layers as nn
from gradcheck import check_grad


def test_grad_of_a_cube(ctx):
    x = nd.array([1., -2., 3.], ctx=ctx)
    x.attach_grad()
    with autograd.record():
        y = (x ** 3).sum()
    dx = autograd.grad(y, x)
    assert isinstance(dx, xpnet.NDArray) and dx.context == ctx
    np.testing.assert_allclose(dx.asnumpy(), 3 * x.asnumpy() ** 2, rtol=1e-6)
    assert (x.grad.asnumpy() == 0).all()          # nothing written to .grad


def test_grad_of_several_variables_intermediates_and_head_grads(ctx):
    a = nd.array([[1., 2.], [3., 4.]], ctx=ctx)
    b = nd.array([0.5, -1.], ctx=ctx)
    unused = nd.ones((3,), ctx=ctx)
    for v in (a, b, unused):
        v.attach_grad()
    hg = nd.array([[1., 0.], [2., 1.]], ctx=ctx)
    with autograd.record():
        h = nd.tanh(a * b)
        y = h * h
    ga, gb, gh, gu = autograd.grad(y, [a, b, h, unused], head_grads=hg, retain_graph=True)
    an, bn, hgn = a.asnumpy(), b.asnumpy(), hg.asnumpy()
    hn = np.tanh(an * bn)
    dh = 2 * hn * hgn
    np.testing.assert_allclose(gh.asnumpy(), dh, rtol=1e-6)
    np.testing.assert_allclose(ga.asnumpy(), dh * (1 - hn ** 2) * bn, rtol=1e-5)
    np.testing.assert_allclose(gb.asnumpy(), (dh * (1 - hn ** 2) * an).sum(0), rtol=1e-5)
    assert (gu.asnumpy() == 0).all()
    y.backward(hg)                                 # the graph was retained
    np.testing.assert_allclose(a.grad.asnumpy(), ga.asnumpy(), rtol=1e-6)


def test_grad_of_a_dense_layer_equals_backward(ctx):
    net = nn.Dense(3, in_units=4)
    net.initialize(ctx=ctx)
    x = nd.array(np.random.randn(5, 4), ctx=ctx)
    w = net.weight.data(ctx)
    with autograd.record():
        loss = (net(x) ** 2).sum()
    gw, gbias = autograd.grad(loss, [w, net.bias.data(ctx)], retain_graph=True)
    assert (net.weight.grad(ctx).asnumpy() == 0).all()
    loss.backward()
    np.testing.assert_allclose(gw.asnumpy(), net.weight.grad(ctx).asnumpy(), rtol=1e-6)
    np.testing.assert_allclose(gbias.asnumpy(), net.bias.grad(ctx).asnumpy(), rtol=1e-6)


def test_grad_errors():
    x = nd.array([1., 2.])
    x.attach_grad()
    with autograd.record():
        y = (x * x).sum()
    with pytest.raises(ValueError, match='attach_grad'):
        autograd.grad(y, [nd.array([1.])])
    with pytest.raises(NotImplementedError, match='higher-order'):
        autograd.grad(y, [x], create_graph=True)
    autograd.grad(y, [x])                          # frees the graph (retain_graph=False)
    with pytest.raises(RuntimeError, match='freed'):
        autograd.grad(y, [x])


class Sigmoid(autograd.Function):
    def forward(self, x):
        y = 1 / (1 + nd.exp(-x))
        self.save_for_backward(y)
        return y

    def backward(self, dy):
        y, = self.saved_tensors
        return dy * y * (1 - y)


class SplitScale(autograd.Function):
    """Two outputs (2a, a*b) and a gradient only for ``a``."""

    def forward(self, a, b):
        self.save_for_backward(a, b)
        return a * 2, a * b

    def backward(self, d1, d2):
        a, b = self.saved_tensors
        return d1 * 2 + d2 * b, None


def test_function_gradients_match_finite_differences(ctx):
    check_grad(lambda x: Sigmoid()(x * 1.5) * 2, [np.random.randn(3, 4)], ctx=ctx)
    x = nd.array(np.random.randn(4), ctx=ctx)
    x.attach_grad()
    with autograd.record():
        y = Sigmoid()(x)
    y.backward()
    s = 1 / (1 + np.exp(-x.asnumpy()))
    np.testing.assert_allclose(y.asnumpy(), s, rtol=1e-6)
    np.testing.assert_allclose(x.grad.asnumpy(), s * (1 - s), rtol=1e-5)


def test_function_with_two_outputs_and_a_missing_gradient(ctx):
    a = nd.array([1., 2.], ctx=ctx)
    b = nd.array([3., -1.], ctx=ctx)
    a.attach_grad()
    b.attach_grad()
    with autograd.record():
        p, q = SplitScale()(a, b)
        loss = (p + q * q).sum()
    loss.backward()
    an, bn = a.asnumpy(), b.asnumpy()
    np.testing.assert_allclose(a.grad.asnumpy(), 2 + 2 * an * bn * bn, rtol=1e-6)
    assert (b.grad.asnumpy() == 0).all()
    with autograd.record():
        p, _ = SplitScale()(a, b)                  # the second output unused: zeros
        total = p.sum()
    total.backward()
    np.testing.assert_allclose(a.grad.asnumpy(), [2, 2])


def test_function_outside_record_and_bad_backward():
    y = Sigmoid()(nd.zeros((2,)))
    assert y.asnumpy().tolist() == [0.5, 0.5] and y._node is None

    class Wrong(autograd.Function):
        def forward(self, x):
            return x * 1

        def backward(self, dy):
            return dy, dy

    x = nd.ones((2,))
    x.attach_grad()
    with autograd.record():
        y = Wrong()(x)
    with pytest.raises(ValueError, match='2 gradient'):
        y.backward()
