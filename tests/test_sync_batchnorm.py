"""SyncBatchNorm: on one device it is BatchNorm; across devices run in parallel it normalizes
with the statistics of the whole batch, exactly like BatchNorm on the unsplit batch."""
import numpy as np
import pytest

from conftest import assert_placed

import xpnet
from xpnet import autograd, nd
from xpnet import layers as nn
from xpnet.parallel import parallel_apply


def _pair(ctxs, x, head):
    """Outputs and gradients of BatchNorm on the whole batch and SyncBatchNorm on shards."""
    bn = nn.BatchNorm(in_channels=3)
    sbn = nn.SyncBatchNorm(in_channels=3)
    bn.initialize(ctx=ctxs[0])
    sbn.initialize(ctx=ctxs)
    for p in (bn, sbn):
        p.gamma.set_data(np.array([0.5, 1.5, 2.0]))
        p.beta.set_data(np.array([0.1, -0.2, 0.3]))
    xb = xpnet.array(x, ctx=ctxs[0])
    xb.attach_grad()
    with autograd.record():
        y = bn(xb)
    y.backward(xpnet.array(head, ctx=ctxs[0]))
    n = len(ctxs)
    xs = [xpnet.array(part, ctx=c) for part, c in zip(np.split(x, n), ctxs)]
    hs = [xpnet.array(part, ctx=c) for part, c in zip(np.split(head, n), ctxs)]
    for xi in xs:
        xi.attach_grad()

    def step(xi, hi):
        with autograd.record():
            yi = sbn(xi)
        yi.backward(hi)
        return yi
    ys = parallel_apply(step, list(zip(xs, hs)))
    return bn, sbn, y, xb, ys, xs


def test_sync_across_devices_equals_whole_batch_batchnorm(ctx_list):
    rng = np.random.default_rng(0)
    x = rng.normal(1.0, 2.0, size=(8, 3, 4)).astype(np.float32)
    x[4:] += 3.0   # shards with different statistics: local BN would differ
    head = rng.normal(size=x.shape).astype(np.float32)
    ctxs = ctx_list
    bn, sbn, y, xb, ys, xs = _pair(ctxs, x, head)
    assert [v.context for v in ys] == ctxs and [v.grad.context for v in xs] == ctxs
    assert_placed(sbn, ctxs)
    np.testing.assert_allclose(np.concatenate([v.asnumpy() for v in ys]), y.asnumpy(),
                               rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.concatenate([v.grad.asnumpy() for v in xs]),
                               xb.grad.asnumpy(), rtol=1e-4, atol=1e-5)
    for name in ('gamma', 'beta'):
        whole = getattr(bn, name).grad(ctxs[0]).asnumpy()
        summed = sum(g.asnumpy() for g in getattr(sbn, name).list_grad())
        np.testing.assert_allclose(summed, whole, rtol=1e-4, atol=1e-5)
    for name in ('running_mean', 'running_var'):
        ref = getattr(bn, name).data(ctxs[0]).asnumpy()
        for rep in getattr(sbn, name).list_data():
            np.testing.assert_allclose(rep.asnumpy(), ref, rtol=1e-5, atol=1e-6)


def test_one_device_is_batchnorm(ctx):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(6, 3, 2)).astype(np.float32)
    bn, sbn = nn.BatchNorm(in_channels=3), nn.SyncBatchNorm(in_channels=3)
    bn.initialize(ctx=ctx)
    sbn.initialize(ctx=ctx)
    with autograd.record():
        a = bn(xpnet.array(x, ctx=ctx))
        b = sbn(xpnet.array(x, ctx=ctx))
    np.testing.assert_array_equal(a.asnumpy(), b.asnumpy())
    np.testing.assert_array_equal(bn.running_var.data(ctx).asnumpy(),
                                  sbn.running_var.data(ctx).asnumpy())


def test_sequential_devices_fail_clearly_instead_of_hanging():
    sbn = nn.SyncBatchNorm(in_channels=2, timeout=0.5)
    sbn.initialize(ctx=[xpnet.cpu(0), xpnet.cpu(1)])
    with autograd.record():
        with pytest.raises(RuntimeError, match='concurrently'):
            sbn(nd.ones((2, 2), ctx=xpnet.cpu(0)))


def test_inference_uses_running_stats_without_sync(ctx_list):
    sbn = nn.SyncBatchNorm(in_channels=2)
    sbn.initialize(ctx=ctx_list)
    out = sbn(nd.ones((2, 2), ctx=ctx_list[1]))
    assert out.context == ctx_list[1]
    np.testing.assert_allclose(out.asnumpy(), 1 / np.sqrt(1 + 1e-5), rtol=1e-6)


def test_estimator_runs_sync_batchnorm_across_devices(ctx_list):
    """The Estimator's default fit_batch runs devices concurrently when SyncBatchNorm needs
    it; the result equals one device with plain BatchNorm on the whole batch."""
    from xpnet.data import ArrayDataset, DataLoader
    from xpnet.estimator import Estimator
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 5)).astype(np.float32)
    y = rng.integers(0, 3, 32).astype(np.float32)

    def make(bn):
        xpnet.random.seed(0)
        net = nn.Sequential()
        net.add(nn.Dense(8, in_units=5), bn, nn.Dense(3, in_units=8))
        return net
    loader = DataLoader(ArrayDataset(x, y), batch_size=16)
    results = []
    for bn, ctx in ((nn.BatchNorm(in_channels=8), ctx_list[:1]),
                    (nn.SyncBatchNorm(in_channels=8), ctx_list)):
        net = make(bn)
        net.initialize(init='xavier', ctx=ctx)
        trainer = xpnet.Trainer(net.collect_params(), 'sgd', {'learning_rate': 0.1})
        est = Estimator(net, xpnet.loss.SoftmaxCrossEntropyLoss(), trainer=trainer, context=ctx)
        est.logger.disabled = True
        est.fit(loader, epochs=2)
        assert_placed(net, ctx)
        results.append({k: p.data(ctx[0]).asnumpy() for k, p in net.collect_params().items()})
    for k in results[0]:
        np.testing.assert_allclose(results[1][k], results[0][k], rtol=1e-4, atol=1e-5,
                                   err_msg=k)
