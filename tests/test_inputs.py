"""Inputs a Gluon user passes: plain NumPy arrays to blocks, losses and metrics (converted
as MXNet does), and bad batch sizes to the Trainer (a clear ValueError)."""
import numpy as np
import pytest

import xpnet
from xpnet import autograd, metric
from xpnet import layers as nn
from xpnet import loss as gloss
from xpnet.layers import rnn


def test_numpy_input_to_a_block_runs_on_the_blocks_device(ctx):
    net = nn.HybridSequential()
    net.add(nn.Dense(4, activation='relu'), nn.Dense(2))
    net.initialize(ctx=ctx)
    x = np.random.RandomState(0).rand(3, 5)             # float64, as NumPy makes it
    out = net(x)
    assert out.context == ctx and out.dtype == np.float32
    np.testing.assert_array_equal(out.asnumpy(), net(xpnet.array(x, ctx=ctx)).asnumpy())


def test_numpy_input_takes_the_parameters_float_dtype():
    net = nn.Dense(2, in_units=3)
    net.initialize()
    net.cast('float64')
    assert net(np.ones((1, 3))).dtype == np.float64
    assert net(np.ones((1, 3), np.float32)).dtype == np.float64


def test_numpy_states_of_a_recurrent_cell_are_converted(ctx):
    cell = rnn.LSTMCell(4, input_size=3)
    cell.initialize(ctx=ctx)
    states = [np.zeros((2, 4)), np.zeros((2, 4))]
    out, new_states = cell(np.ones((2, 3)), states)
    want, _ = cell(xpnet.array(np.ones((2, 3)), ctx=ctx),
                   [xpnet.array(s, ctx=ctx) for s in states])
    assert out.context == ctx and all(s.context == ctx for s in new_states)
    np.testing.assert_array_equal(out.asnumpy(), want.asnumpy())


def test_numpy_arrays_to_losses_follow_the_other_inputs_device(ctx):
    pred = np.random.RandomState(0).randn(4, 3)
    label = np.array([0, 2, 1, 1])
    ref = gloss.SoftmaxCrossEntropyLoss()(xpnet.array(pred, ctx=ctx),
                                          xpnet.array(label, ctx=ctx)).asnumpy()
    both_numpy = gloss.SoftmaxCrossEntropyLoss()(pred, label)
    assert both_numpy.context == xpnet.cpu()
    mixed = gloss.SoftmaxCrossEntropyLoss()(pred, xpnet.array(label, ctx=ctx))
    assert mixed.context == ctx
    np.testing.assert_allclose(mixed.asnumpy(), ref, rtol=1e-6)
    np.testing.assert_allclose(both_numpy.asnumpy(), ref, rtol=1e-6)
    l2 = gloss.L2Loss()(xpnet.array(pred, ctx=ctx), np.zeros((4, 3)))
    np.testing.assert_allclose(l2.asnumpy(), 0.5 * (pred ** 2).mean(axis=1), rtol=1e-6)


def test_numpy_inputs_train_end_to_end():
    """The Gluon loop with NumPy batches: forward, loss, backward, step and a metric."""
    rng = np.random.RandomState(0)
    x, y = rng.rand(8, 5), rng.randint(0, 3, 8)
    net = nn.Dense(3, in_units=5)
    net.initialize()
    trainer = xpnet.Trainer(net.collect_params(), 'sgd', {'learning_rate': 0.5})
    acc = metric.Accuracy()
    losses = []
    for _ in range(20):
        with autograd.record():
            out = net(x)
            loss = gloss.SoftmaxCrossEntropyLoss()(out, y)
        loss.backward()
        trainer.step(len(x))
        acc.update(y, out)
        losses.append(float(loss.mean().asscalar()))
    assert losses[-1] < losses[0] and acc.num_inst == 160


@pytest.mark.parametrize('batch_size', [0, -4, float('nan'), float('inf'), '32', None, True])
@pytest.mark.parametrize('method', ['step', 'update'])
def test_trainer_refuses_a_bad_batch_size(method, batch_size):
    net = nn.Dense(2, in_units=3)
    net.initialize()
    trainer = xpnet.Trainer(net.collect_params(), 'sgd')
    with autograd.record():
        loss = net(xpnet.array(np.ones((2, 3)))).sum()
    loss.backward()
    before = net.weight.data().asnumpy().copy()
    with pytest.raises(ValueError, match=rf'Trainer.{method}: batch_size must be a positive '
                                         rf'number.*got {batch_size!r}'):
        getattr(trainer, method)(batch_size)
    np.testing.assert_array_equal(net.weight.data().asnumpy(), before)   # nothing applied
    getattr(trainer, method)(np.int64(2))               # NumPy scalars are fine
    assert not np.array_equal(net.weight.data().asnumpy(), before)
