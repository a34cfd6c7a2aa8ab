"""What mixed precision costs and saves, measured in one process with interleaved runs.

1. AMP off: the ops that have a mixed-precision policy (``exp``, ``sum``, ``softmax``,
   ``fully_connected``...) are wrapped by ``ops._amp.on_device_amp`` instead of
   ``_base.on_device``; this times both wrappers around the same op on a tiny array,
   alternating, so the difference is the policy check alone.
2. A training step of an MLP (Dense 512-256-10, batch 128, Adam) in float32 and under AMP
   on the CPU, alternating (NumPy's float16 has no BLAS: AMP's products run in float32 and
   are rounded, plus the casts and the loss scaler's work).
3. Kernels per warm step of the same MLP on the simulated device, float32 and AMP.

    python benchmarks/bench_amp.py [--repeat 15]
"""
import argparse
import os
import sys
import time

import numpy as np

import xpnet
from xpnet import amp, autograd, nd
from xpnet import layers as nn
from xpnet.backend import simulated, sim
from xpnet.ops._base import on_device

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _machine import machine_line  # noqa: E402


def _median(fn, repeat, inner):
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        for _ in range(inner):
            fn()
        times.append((time.perf_counter() - t) / inner)
    return float(np.median(times))


def wrapper_cost(repeat):
    import xpnet.ops as ops
    x = nd.array(np.linspace(0.1, 1, 16, dtype=np.float32))
    w = nd.array(np.ones((4, 16), np.float32))
    print('1. AMP off: the policy wrapper against the plain one, per call (us)')
    for name, args in [('exp', (x,)), ('sum', (x,)), ('softmax', (x,)),
                       ('fully_connected', (x.reshape(1, 16), w))]:
        policy = getattr(ops, name)
        plain = on_device(policy.__wrapped__)
        a, b = [], []
        for _ in range(repeat):        # interleaved: both see the same machine load
            a.append(_median(lambda: policy(*args), 3, 2000))
            b.append(_median(lambda: plain(*args), 3, 2000))
        a, b = np.median(a) * 1e6, np.median(b) * 1e6
        print(f'  {name:16s} policy {a:6.3f}  plain {b:6.3f}  difference {a - b:+.3f}')


def _mlp(ctx):
    xpnet.random.seed(0)
    net = nn.Sequential()
    net.add(nn.Dense(512, activation='relu'), nn.Dense(256, activation='relu'), nn.Dense(10))
    net.initialize(init='xavier', ctx=ctx)
    trainer = xpnet.Trainer(net.collect_params(), 'adam', {'learning_rate': 1e-3})
    return net, trainer


def _step(net, trainer, x, y, use_amp):
    loss_fn = xpnet.loss.SoftmaxCrossEntropyLoss()
    with autograd.record():
        loss = loss_fn(net(x), y)
        if use_amp:
            with amp.scale_loss(loss, trainer) as scaled:
                autograd.backward(scaled)
    if not use_amp:
        loss.backward()
    trainer.step(x.shape[0])


def step_cost(repeat):
    rng = np.random.RandomState(0)
    x = nd.array(rng.rand(128, 784).astype(np.float32))
    y = nd.array(rng.randint(0, 10, 128).astype(np.float32))
    nets = {}
    for use_amp in (False, True):
        amp._reset()
        if use_amp:
            amp.init()
        nets[use_amp] = _mlp(xpnet.cpu())
        if use_amp:
            amp.init_trainer(nets[use_amp][1])
    times = {False: [], True: []}
    for _ in range(repeat):
        for use_amp in (False, True):
            amp._reset()
            if use_amp:
                amp.init()
            net, trainer = nets[use_amp]
            times[use_amp].append(_median(lambda: _step(net, trainer, x, y, use_amp), 1, 3))
    amp._reset()
    f32, f16 = np.median(times[False]) * 1e3, np.median(times[True]) * 1e3
    print('2. MLP 784-512-256-10, batch 128, Adam, one training step on the CPU (ms)')
    print(f'  float32 {f32:7.2f}   AMP {f16:7.2f}   AMP/float32 {f16 / f32:.2f}')


def kernel_counts():
    ctx = sim(0)
    rng = np.random.RandomState(0)
    x = nd.array(rng.rand(128, 784).astype(np.float32), ctx=ctx)
    y = nd.array(rng.randint(0, 10, 128).astype(np.float32), ctx=ctx)
    counts = {}
    for use_amp in (False, True):
        amp._reset()
        if use_amp:
            amp.init()
        net, trainer = _mlp(ctx)
        if use_amp:
            amp.init_trainer(trainer)
        with ctx.use():
            _step(net, trainer, x, y, use_amp)
            with simulated.counting() as c:
                _step(net, trainer, x, y, use_amp)
        counts[use_amp] = (c.kernels, c.syncs)
    amp._reset()
    print('3. the same step on the simulated device: kernels, host syncs')
    print(f'  float32 {counts[False]}   AMP {counts[True]}')


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--repeat', type=int, default=15)
    args = ap.parse_args()
    print(machine_line())
    wrapper_cost(args.repeat)
    step_cost(args.repeat)
    kernel_counts()


if __name__ == '__main__':
    main()
