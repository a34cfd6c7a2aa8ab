"""The Estimator's input pipeline and AMP on a device: ms per training step.

An MLP on wide inputs (the host-to-device copy of a batch is a sizeable part of a step)
trained by ``Estimator.fit`` on ``--device`` (default ``gpu(0)``; ``sim`` runs it on the
simulated device, for a dry run), alternating, for ``--rounds`` rounds:

- ``plain``: batches copied when the step needs them (a BatchProcessor subclass turns the
  prefetcher off);
- ``prefetch``: the next batch copied on a side stream while the current one trains;
- ``prefetch+pinned``: the same from ``DataLoader(pin_memory=True)`` batches;
- ``amp``: ``prefetch+pinned`` with ``Estimator(amp=True)``.

    python benchmarks/bench_input_pipeline.py [--device gpu|sim] [--rounds 5] [--batches 50]
"""
import argparse
import logging
import os
import sys
import time

import numpy as np

import xpnet
from xpnet import layers as nn
from xpnet.data import ArrayDataset, DataLoader
from xpnet.estimator import BatchProcessor, Estimator

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _machine import machine_line  # noqa: E402


class NoPrefetch(BatchProcessor):
    """BatchProcessor's own work, as a subclass: the Estimator then copies nothing ahead."""

    def fit_batch(self, estimator, train_batch, batch_axis=0):
        return super().fit_batch(estimator, train_batch, batch_axis)


def _sync(ctx):
    if ctx.device_type != 'cpu':
        with ctx.use():
            ctx.xp.cuda.runtime.deviceSynchronize()


def run(ctx, variant, x, y, batch, batches):
    xpnet.random.seed(0)
    net = nn.Sequential()
    net.add(nn.Dense(1024, activation='relu'), nn.Dense(1024, activation='relu'), nn.Dense(10))
    net.initialize(init='xavier', ctx=ctx)
    trainer = xpnet.Trainer(net.collect_params(), 'sgd', {'learning_rate': 0.01,
                                                          'momentum': 0.9})
    est = Estimator(net, xpnet.loss.SoftmaxCrossEntropyLoss(), trainer=trainer, context=ctx,
                    batch_processor=NoPrefetch() if variant == 'plain' else None,
                    amp=variant == 'amp')
    est.logger.setLevel(logging.WARNING)
    pinned = variant in ('prefetch+pinned', 'amp')
    loader = DataLoader(ArrayDataset(x, y), batch_size=batch, pin_memory=pinned,
                        pin_device_id=ctx if ctx.device_type == 'sim' else ctx.device_id)
    est.fit(loader, batches=3)                  # warm: pools, kernels compiled
    _sync(ctx)
    start = time.perf_counter()
    est.fit(loader, batches=batches)
    _sync(ctx)
    return (time.perf_counter() - start) / batches * 1e3


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--device', default='gpu', choices=['gpu', 'sim'])
    ap.add_argument('--rounds', type=int, default=5)
    ap.add_argument('--batches', type=int, default=50)
    ap.add_argument('--batch', type=int, default=512)
    ap.add_argument('--features', type=int, default=8192)
    args = ap.parse_args()
    ctx = xpnet.gpu(0) if args.device == 'gpu' else xpnet.backend.sim(0)
    print(machine_line(), ctx)
    rng = np.random.RandomState(0)
    n = args.batch * 8
    x = rng.rand(n, args.features).astype(np.float32)
    y = rng.randint(0, 10, n).astype(np.float32)
    variants = ['plain', 'prefetch', 'prefetch+pinned', 'amp']
    times = {v: [] for v in variants}
    for _ in range(args.rounds):
        for v in variants:
            times[v].append(run(ctx, v, x, y, args.batch, args.batches))
    print(f'batch {args.batch} x {args.features} float32 '
          f'({args.batch * args.features * 4 / 2**20:.0f} MiB), ms/step, median of '
          f'{args.rounds} rounds:')
    base = np.median(times['plain'])
    for v in variants:
        t = np.median(times[v])
        print(f'  {v:16s} {t:8.2f}  ({t / base:.2f}x plain)')


if __name__ == '__main__':
    main()
