"""Training step of an MLP 784-512-512-10 (batch 128, float32): xpnet vs hand-written NumPy.

One step = forward, softmax cross-entropy, backward, SGD with momentum 0.9. xpnet runs the
Gluon way (``autograd.record()``, ``loss.backward()``, ``trainer.step(batch_size)``); the
baseline is the same math written directly in NumPy with in-place updates, the floor any
NumPy framework can reach. Both start from the same weights and are checked to agree. If
PyTorch is importable its time for the same step is printed too.

    python benchmarks/bench_mlp.py [--steps 100] [--rounds 5]
"""
import argparse
import os
import sys
import time

import numpy as np

import xpnet
from xpnet import autograd
from xpnet import layers as nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _machine import machine_line  # noqa: E402

BATCH, SIZES, LR, MOM = 128, (784, 512, 512, 10), 0.05, 0.9


def make_data(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((BATCH, SIZES[0])).astype(np.float32)
    y = rng.integers(0, SIZES[-1], BATCH)
    return x, y


def build_xpnet(x, y):
    net = nn.Sequential()
    net.add(nn.Dense(SIZES[1], activation='relu', in_units=SIZES[0]),
            nn.Dense(SIZES[2], activation='relu', in_units=SIZES[1]),
            nn.Dense(SIZES[3], in_units=SIZES[2]))
    net.initialize(init='xavier')
    trainer = xpnet.Trainer(net.collect_params(), 'sgd', {'learning_rate': LR, 'momentum': MOM})
    loss_fn = xpnet.loss.SoftmaxCrossEntropyLoss()
    xd, yd = xpnet.array(x), xpnet.array(y.astype(np.float32))

    def step():
        with autograd.record():
            loss = loss_fn(net(xd), yd)
        loss.backward()
        trainer.step(BATCH)
    weights = [p.data().asnumpy() for p in net.collect_params().values()]
    return step, net, weights


def build_numpy(x, y, weights):
    W = [w.copy() for w in weights]           # W1, b1, W2, b2, W3, b3
    M = [np.zeros_like(w) for w in W]
    rows = np.arange(BATCH)
    scale = np.float32(LR / BATCH)
    mom = np.float32(MOM)

    def step():
        W1, b1, W2, b2, W3, b3 = W
        h1 = x @ W1.T
        h1 += b1
        np.maximum(h1, 0, out=h1)
        h2 = h1 @ W2.T
        h2 += b2
        np.maximum(h2, 0, out=h2)
        o = h2 @ W3.T
        o += b3
        o -= o.max(axis=1, keepdims=True)
        np.exp(o, out=o)
        o /= o.sum(axis=1, keepdims=True)
        o[rows, y] -= 1                         # d(sum of CE)/d(logits)
        g3, gb3 = o.T @ h2, o.sum(axis=0)
        d2 = o @ W3
        d2 *= h2 > 0
        g2, gb2 = d2.T @ h1, d2.sum(axis=0)
        d1 = d2 @ W2
        d1 *= h1 > 0
        g1, gb1 = d1.T @ x, d1.sum(axis=0)
        for w, m, g in zip(W, M, (g1, gb1, g2, gb2, g3, gb3)):
            m *= mom
            g *= scale
            m -= g
            w += m
    return step, W


def build_torch(x, y, weights):
    try:
        import torch
    except ImportError:
        return None
    net = torch.nn.Sequential(torch.nn.Linear(SIZES[0], SIZES[1]), torch.nn.ReLU(),
                              torch.nn.Linear(SIZES[1], SIZES[2]), torch.nn.ReLU(),
                              torch.nn.Linear(SIZES[2], SIZES[3]))
    with torch.no_grad():
        for p, w in zip(net.parameters(), weights):
            p.copy_(torch.from_numpy(w))
    opt = torch.optim.SGD(net.parameters(), lr=LR, momentum=MOM)
    loss_fn = torch.nn.CrossEntropyLoss()
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)

    def step():
        opt.zero_grad(set_to_none=True)
        loss_fn(net(xt), yt).backward()
        opt.step()
    return step


def median_ms(step, n):
    times = []
    for _ in range(n):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    return float(np.median(times)) * 1e3


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--steps', type=int, default=100, help='timed steps per round')
    ap.add_argument('--rounds', type=int, default=5, help='interleaved rounds')
    args = ap.parse_args()
    x, y = make_data()
    xp_step, net, weights = build_xpnet(x, y)
    np_step, W = build_numpy(x, y, weights)
    th_step = build_torch(x, y, weights)

    for _ in range(3):   # same updates from the same start: the two must agree
        xp_step()
        np_step()
    for p, w in zip(net.collect_params().values(), W):
        np.testing.assert_allclose(p.data().asnumpy(), w, rtol=2e-3, atol=2e-5)

    rows = []
    for _ in range(args.rounds):   # interleave so machine noise hits all alike
        for s in (xp_step, np_step) + ((th_step,) if th_step else ()):
            s()
        rows.append((median_ms(xp_step, args.steps), median_ms(np_step, args.steps),
                     median_ms(th_step, args.steps) if th_step else float('nan')))
    xp_t, np_t, th_t = (float(np.median(c)) for c in zip(*rows))
    print(machine_line())
    print(f'MLP {"-".join(map(str, SIZES))}, batch {BATCH}, float32, SGD momentum '
          f'({args.rounds} rounds x {args.steps} steps, medians)')
    print(f'  xpnet            {xp_t:7.2f} ms/step')
    print(f'  hand NumPy       {np_t:7.2f} ms/step')
    if th_step:
        print(f'  PyTorch {__import__("torch").__version__:8s} {th_t:7.2f} ms/step')
    print(f'  ratio xpnet / hand NumPy = {xp_t / np_t:.3f}   (target <= 1.10)')
    if th_step:
        print(f'  ratio xpnet / PyTorch    = {xp_t / th_t:.3f}')
    per_round = [r[0] / r[1] for r in rows]
    print(f'  per-round ratios: {", ".join(f"{r:.3f}" for r in per_round)}')


if __name__ == '__main__':
    main()
