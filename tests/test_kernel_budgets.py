"""Kernel and synchronisation budgets of warm training steps, counted on the simulated
device (``xpnet.backend.simulated``): what a GPU step would launch, as tests on a CPU.

The budgets (issue 11): an MLP step launches at most 20 kernels, a CIFAR-style CNN step at
most 150, an LSTM language model at most 4 per time step plus a constant, and no step
reads anything back. Kernel counts do not depend on sizes, so the models are small
versions of the benchmarks' (``benchmarks/sim_counts.py``, ``benchmarks/bench_gpu.py``).
"""
import numpy as np
import pytest

import xpnet
from xpnet import autograd
from xpnet import layers as nn
from xpnet.backend import sim, simulated


def _trainer(net, opt='sgd', **params):
    params.setdefault('learning_rate', 0.05)
    return xpnet.Trainer(net.collect_params(), opt, params)


def _step_fn(net, trainer, x, y, loss_fn=None):
    loss_fn = loss_fn or xpnet.loss.SoftmaxCrossEntropyLoss()

    def step():
        with autograd.record():
            loss = loss_fn(net(x), y)
        loss.backward()
        trainer.step(x.shape[0])
    return step


def _data(ctx, shape, classes, rng):
    x = xpnet.array(rng.standard_normal(shape).astype(np.float32), ctx=ctx)
    y = xpnet.array(rng.integers(0, classes, shape[0]).astype(np.float32), ctx=ctx)
    return x, y


def mlp_step(ctx, opt='sgd', **params):
    """bench_mlp's model: Dense 784-512-512-10 (ReLU) in miniature."""
    net = nn.Sequential()
    net.add(nn.Dense(32, activation='relu', in_units=20),
            nn.Dense(32, activation='relu', in_units=32), nn.Dense(10, in_units=32))
    net.initialize(init='xavier', ctx=ctx)
    x, y = _data(ctx, (8, 20), 10, np.random.default_rng(0))
    return _step_fn(net, _trainer(net, opt, **params), x, y)


def cnn_step(ctx, gpu_bench=False):
    """bench_conv's CIFAR model ([Conv3x3+BN+ReLU] x2, MaxPool, Conv3x3+BN+ReLU, global
    average pooling, Dense 10), or with ``gpu_bench`` the GPU benchmark's (four conv
    blocks, two pools), on 3x8x8 images."""
    net = nn.HybridSequential()

    def block(c):
        return [nn.Conv2D(c, 3, padding=1), nn.BatchNorm(), nn.Activation('relu')]
    if gpu_bench:
        net.add(*block(8), *block(8), nn.MaxPool2D(2), *block(16), *block(16),
                nn.MaxPool2D(2), nn.GlobalAvgPool2D(), nn.Dense(10))
    else:
        net.add(*block(8), *block(8), nn.MaxPool2D(2), *block(16), nn.GlobalAvgPool2D(),
                nn.Dense(10))
    net.initialize(init=xpnet.init.Xavier(), ctx=ctx)
    x, y = _data(ctx, (4, 3, 8, 8), 10, np.random.default_rng(0))
    net(x)
    return _step_fn(net, _trainer(net, momentum=0.9), x, y)


class _LM(nn.Block):
    def __init__(self, vocab, emb, hidden, dropout):
        super().__init__()
        self.embedding = nn.Embedding(vocab, emb)
        self.drop = nn.Dropout(dropout)
        self.rnn = nn.rnn.LSTM(hidden, input_size=emb)
        self.decoder = nn.Dense(vocab, flatten=False, in_units=hidden)

    def forward(self, x, states):
        out, states = self.rnn(self.drop(self.embedding(x)), states)
        return self.decoder(self.drop(out)), states


def lstm_step(ctx, steps, dropout=0.0):
    """bench_rnn's word LM (Embedding, LSTM, Dense over the vocabulary) in miniature."""
    V, N = 50, 3
    net = _LM(V, 8, 8, dropout)
    net.initialize(xpnet.init.Uniform(0.1), ctx=ctx)
    trainer = _trainer(net, learning_rate=0.1)
    loss_fn = xpnet.loss.SoftmaxCrossEntropyLoss()
    rng = np.random.default_rng(0)
    x = xpnet.array(rng.integers(0, V, (steps, N)), ctx=ctx, dtype='int64')
    y = xpnet.array(rng.integers(0, V, (steps * N,)), ctx=ctx, dtype='int64')
    state = {'s': net.rnn.begin_state(N, ctx=ctx)}

    def step():
        with autograd.record():
            logits, new = net(x, state['s'])
            loss = loss_fn(logits.reshape((-1, V)), y)
        loss.backward()
        trainer.step(steps * N)
        state['s'] = [s.detach() for s in new]
    return step


def count(step):
    """Kernels and syncs of one warm step (it may not synchronise at all)."""
    step()
    with simulated.counting() as c:
        with simulated.allow_synchronize(False):
            step()
    return c


@pytest.mark.parametrize('opt,params', [('sgd', {'momentum': 0.9}), ('sgd', {}),
                                        ('nag', {'momentum': 0.9}), ('adam', {}),
                                        ('adamw', {'wd': 0.01})])
def test_mlp_step_budget(opt, params):
    c = count(mlp_step(sim(0), opt, **params))
    assert c.kernels <= 20, c.kernels
    assert c.syncs == 0


@pytest.mark.parametrize('gpu_bench', [False, True])
def test_cnn_step_budget(gpu_bench):
    c = count(cnn_step(sim(0), gpu_bench))
    assert c.kernels <= (150 if not gpu_bench else 160), c.kernels
    assert c.syncs == 0


@pytest.mark.parametrize('dropout', [0.0, 0.2])
def test_lstm_lm_step_budget(dropout):
    """At most 4 kernels per time step (one GEMM and one gate kernel each way) plus a
    constant that does not grow with the sequence."""
    short = count(lstm_step(sim(0), 2, dropout)).kernels
    c = count(lstm_step(sim(0), 10, dropout))
    per_step = (c.kernels - short) / 8
    assert per_step <= 4, per_step
    assert c.kernels - 10 * per_step <= 60, c.kernels
    assert c.syncs == 0


def test_budgets_hold_on_the_second_device():
    """The same counts on sim(1) while sim(0) is current: every kernel under its device."""
    assert count(mlp_step(sim(1))).kernels == count(mlp_step(sim(0))).kernels


def test_generic_device_path_is_what_the_fused_kernels_replace():
    """Without the fused kernels (the CPU code through the device's array module) the same
    MLP step launches several times more kernels: the budget measures the fusion."""
    from xpnet.backend import kernels
    with kernels.disabled():
        generic = count(mlp_step(sim(0))).kernels
    assert generic > 2 * count(mlp_step(sim(0))).kernels
