"""Cost of the metric updates an Estimator makes every batch.

Times, in the same run, one batch of updates of ``Accuracy``, ``CrossEntropy``,
``TopKAccuracy(5)`` and ``Loss`` (128 samples, 10 classes) against the same statistics
computed by hand with NumPy (the floor). Prints medians and the ratio to the floor; the
updates should cost well under a millisecond per batch (label validation included).

    python benchmarks/bench_metric.py [--reps 200] [--rounds 5]
"""
import argparse
import platform
import time

import numpy as np

import xpnet
from xpnet import metric

BATCH, CLASSES = 128, 10


def cpu_model():
    try:
        with open('/proc/cpuinfo') as f:
            return next(line.split(':', 1)[1].strip() for line in f
                        if line.startswith('model name'))
    except (OSError, StopIteration):
        return platform.processor() or 'unknown CPU'


def median_us(fn, reps):
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times)) * 1e6


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--reps', type=int, default=200)
    ap.add_argument('--rounds', type=int, default=5)
    args = ap.parse_args()
    rng = np.random.RandomState(0)
    label_np = rng.randint(0, CLASSES, BATCH).astype(np.float32)
    pred_np = rng.rand(BATCH, CLASSES).astype(np.float32)
    loss_np = rng.rand(BATCH).astype(np.float32)
    label, pred, loss = (xpnet.array(a) for a in (label_np, pred_np, loss_np))
    metrics = [metric.Accuracy(), metric.CrossEntropy(), metric.TopKAccuracy(5)]
    loss_metric = metric.Loss()

    def ours():
        for m in metrics:
            m.update(label, pred)
        loss_metric.update(0, [loss])

    def hand():
        lab = label_np.astype(np.int64)
        (pred_np.argmax(axis=1) == lab).sum()
        -np.log(pred_np[np.arange(BATCH), lab] + 1e-12).sum()
        top = np.argpartition(pred_np, -5, axis=1)[:, -5:]
        (top == lab[:, None]).any(axis=1).sum()
        loss_np.sum()

    rows = [(median_us(ours, args.reps), median_us(hand, args.reps))
            for _ in range(args.rounds)]
    t_ours = float(np.median([r[0] for r in rows]))
    t_hand = float(np.median([r[1] for r in rows]))
    print(f'CPU: {cpu_model()}')
    print(f'Metric updates per batch ({BATCH} x {CLASSES}; {args.rounds} rounds x '
          f'{args.reps} reps, medians)')
    print(f'  Accuracy + CrossEntropy + TopK(5) + Loss  {t_ours:8.1f} us')
    print(f'  the same by hand with NumPy               {t_hand:8.1f} us   '
          f'ratio {t_ours / t_hand:.2f}')


if __name__ == '__main__':
    main()
