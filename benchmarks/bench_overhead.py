"""Cost of autograd bookkeeping per recorded op.

A chain of 1,000 small elementwise ops (tanh, multiply by a scalar, add a scalar, in turn) on
a tiny array, forward under ``autograd.record()`` and backward, timed against the same chain
in raw NumPy with a hand-written backward. The difference divided by the number of ops is the
framework's cost per op (the unrolled LSTM language model records ~1,500 ops per step).

    python benchmarks/bench_overhead.py [--ops 1000] [--repeat 30]
"""
import argparse
import time

import numpy as np

import xpnet
from xpnet import autograd, nd


def xpnet_chain(x0, n_ops):
    x0.attach_grad()
    with autograd.record():
        y = x0
        for i in range(n_ops):
            k = i % 3
            if k == 0:
                y = nd.tanh(y)
            elif k == 1:
                y = y * 1.01
            else:
                y = y + 0.01
    y.backward()
    return x0.grad


def numpy_chain(x0, n_ops):
    saved = []
    y = x0
    for i in range(n_ops):
        k = i % 3
        if k == 0:
            y = np.tanh(y)
            saved.append(y)
        elif k == 1:
            y = y * np.float32(1.01)
        else:
            y = y + np.float32(0.01)
    g = np.ones_like(y)
    for i in reversed(range(n_ops)):
        k = i % 3
        if k == 0:
            t = saved.pop()
            g = g * (1 - t * t)
        elif k == 1:
            g = g * np.float32(1.01)
    return g


def median_time(fn, repeat):
    for _ in range(3):
        fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--ops', type=int, default=1000)
    ap.add_argument('--repeat', type=int, default=30)
    ap.add_argument('--size', type=int, default=16)
    args = ap.parse_args()
    host = np.linspace(-1, 1, args.size, dtype=np.float32)
    x = xpnet.array(host)
    g_x = xpnet_chain(x, args.ops).asnumpy()
    g_n = numpy_chain(host, args.ops)
    np.testing.assert_allclose(g_x, g_n, rtol=1e-4, atol=1e-6)

    t_x = median_time(lambda: xpnet_chain(xpnet.array(host), args.ops), args.repeat)
    t_n = median_time(lambda: numpy_chain(host, args.ops), args.repeat)
    per_op = (t_x - t_n) / args.ops * 1e6
    print(f'chain of {args.ops} elementwise ops on {args.size} floats, forward + backward')
    print(f'  xpnet (record + backward): {t_x * 1e3:8.2f} ms  ({t_x / args.ops * 1e6:.2f} us/op)')
    print(f'  raw NumPy (hand backward): {t_n * 1e3:8.2f} ms  ({t_n / args.ops * 1e6:.2f} us/op)')
    print(f'  ratio xpnet/NumPy: {t_x / t_n:.2f}   framework cost per recorded op: '
          f'{per_op:.2f} us')


if __name__ == '__main__':
    main()
