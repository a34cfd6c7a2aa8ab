"""What one warm training step would ask of a GPU: kernels launched, host synchronisations and
host-to-device copies, counted on the simulated device (``xpnet.backend.sim``; the counting
model is in ``xpnet/backend/simulated.py``). No timing: the counts are exact and machine
independent, so they make launch and sync budgets testable on a CPU.

Models (as in the benchmarks):
  mlp        bench_mlp.py: Dense 784-512-512-10 (ReLU), batch 128, softmax cross-entropy,
             Trainer SGD momentum 0.9
  cnn        bench_conv.py 'cifar': [Conv3x3(32)+BN+ReLU] x2, MaxPool2, Conv3x3(64)+BN+ReLU,
             GlobalAvgPool, Dense 10 on 3x32x32, batch 32, Trainer SGD momentum 0.9
  lstm       bench_rnn.py: Embedding 10000x200, LSTM 200 over 35 steps (the LSTM layer),
             Dense 10000, batch 20, Trainer SGD; per time step = (total - const) / 35
  estimator  the mlp through Estimator.fit (Accuracy + Loss metrics, default handlers)

    python benchmarks/sim_counts.py [--models mlp,cnn,lstm,estimator] [--trace 15]
"""
import argparse
import logging

import numpy as np

import xpnet
from xpnet import autograd
from xpnet import layers as nn
from xpnet.backend import sim, simulated


def mlp(ctx):
    """bench_mlp's network and trainer."""
    net = nn.Sequential()
    net.add(nn.Dense(512, activation='relu', in_units=784),
            nn.Dense(512, activation='relu', in_units=512), nn.Dense(10, in_units=512))
    net.initialize(init='xavier', ctx=ctx)
    trainer = xpnet.Trainer(net.collect_params(), 'sgd', {'learning_rate': 0.05,
                                                           'momentum': 0.9})
    return net, trainer


def mlp_step(ctx):
    net, trainer = mlp(ctx)
    rng = np.random.default_rng(0)
    x = xpnet.array(rng.standard_normal((128, 784)), ctx=ctx)
    y = xpnet.array(rng.integers(0, 10, 128).astype(np.float32), ctx=ctx)
    loss_fn = xpnet.loss.SoftmaxCrossEntropyLoss()

    def step():
        with autograd.record():
            loss = loss_fn(net(x), y)
        loss.backward()
        trainer.step(128)
    return step


def cnn_step(ctx):
    net = nn.HybridSequential()
    net.add(nn.Conv2D(32, 3, padding=1), nn.BatchNorm(), nn.Activation('relu'),
            nn.Conv2D(32, 3, padding=1), nn.BatchNorm(), nn.Activation('relu'),
            nn.MaxPool2D(2),
            nn.Conv2D(64, 3, padding=1), nn.BatchNorm(), nn.Activation('relu'),
            nn.GlobalAvgPool2D(), nn.Dense(10))
    net.initialize(init=xpnet.init.Xavier(), ctx=ctx)
    rng = np.random.default_rng(0)
    x = xpnet.array(rng.standard_normal((32, 3, 32, 32)), ctx=ctx)
    y = xpnet.array(rng.integers(0, 10, 32).astype(np.float32), ctx=ctx)
    net(x)
    trainer = xpnet.Trainer(net.collect_params(), 'sgd', {'learning_rate': 0.01,
                                                           'momentum': 0.9})
    loss_fn = xpnet.loss.SoftmaxCrossEntropyLoss()

    def step():
        with autograd.record():
            loss = loss_fn(net(x), y)
        loss.backward()
        trainer.step(32)
    return step


V, E, H, T, N = 10000, 200, 200, 35, 20


class LM(nn.Block):
    def __init__(self):
        super().__init__()
        self.embedding = nn.Embedding(V, E)
        self.rnn = nn.rnn.LSTM(H, input_size=E)
        self.decoder = nn.Dense(V, flatten=False, in_units=H)

    def forward(self, x, states):
        out, states = self.rnn(self.embedding(x), states)
        return self.decoder(out), states


def lstm_step(ctx, steps=T):
    xpnet.random.seed(0)
    net = LM()
    net.initialize(xpnet.init.Uniform(0.1), ctx=ctx)
    trainer = xpnet.Trainer(net.collect_params(), 'sgd', {'learning_rate': 0.1})
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


def estimator_step(ctx):
    """Two warm Estimator.fit batches of the mlp (counted per batch)."""
    from xpnet.data import ArrayDataset, DataLoader
    from xpnet.estimator import Estimator
    net, trainer = mlp(ctx)
    rng = np.random.default_rng(0)
    data = ArrayDataset(rng.standard_normal((256, 784)).astype(np.float32),
                        rng.integers(0, 10, 256).astype(np.float32))
    loader = DataLoader(data, batch_size=128)
    est = Estimator(net, xpnet.loss.SoftmaxCrossEntropyLoss(), train_metrics=[
        xpnet.metric.Accuracy()], trainer=trainer, context=ctx)
    est.logger.setLevel(logging.WARNING)

    def step():
        est.fit(loader, epochs=1)
    step.per = 2
    return step


BUILDERS = {'mlp': mlp_step, 'cnn': cnn_step, 'lstm': lstm_step, 'estimator': estimator_step}


def count_step(step, trace=False):
    step()                                    # warm: deferred init, states, caches
    with simulated.counting(trace=trace) as c:
        step()
    return c


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--models', default='mlp,cnn,lstm,estimator')
    ap.add_argument('--trace', type=int, default=0, metavar='N',
                    help='print the N code sites launching the most kernels per model')
    args = ap.parse_args(argv)
    ctx = sim(0)
    print(f'{"model":10s} {"kernels":>8s} {"syncs":>6s} {"htod":>5s} {"dtoh":>5s}  notes')
    for name in args.models.split(','):
        step = BUILDERS[name](ctx)
        c = count_step(step, trace=args.trace > 0)
        per = getattr(step, 'per', 1)
        note = '' if per == 1 else f'per batch of {per} (one epoch of fit)'
        if name == 'lstm':
            short = count_step(lstm_step(ctx, steps=5))
            per_t = (c.kernels - short.kernels) / (T - 5)
            note = f'{per_t:.1f} per time step + {c.kernels - per_t * T:.0f} const'
        print(f'{name:10s} {c.kernels / per:8.0f} {c.syncs / per:6.0f} {c.htod / per:5.0f} '
              f'{c.dtoh / per:5.0f}  {note}')
        if args.trace:
            for (kind, site), n in c.by_site.most_common(args.trace):
                print(f'    {n / per:6.0f} {kind:6s} {site}')


if __name__ == '__main__':
    main()
