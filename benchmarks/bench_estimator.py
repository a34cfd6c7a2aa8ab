"""Estimator overhead: ``Estimator.fit`` vs a hand-written training loop.

The same MLP 784-512-512-10 (batch 128, float32, synthetic data, SGD with momentum) is
trained for a fixed number of batches three times per round, from the same weights and the
same DataLoader: with ``Estimator.fit(batches=N)`` and its default handlers (gradient
update, accuracy and loss metrics, stopping, logging to a file instead of stdout); with
``fit`` and, besides those, every other handler present but idle (checkpoints with no
period, which still track the resume point for Ctrl+C; a plateau handler and early
stopping that never trigger; a finished warmup; a CSV log; gradient accumulation of 1 and
no clipping; an event-filtered user handler); and with the hand-written Gluon loop
(``autograd.record()``, ``loss.backward()``, ``trainer.step()``). Many short rounds rotate
the three (and which goes first), so all see the same machine load; the median and best
per-batch times and the ratios are printed (target: Estimator overhead <= 5%). BLAS runs on
one thread unless ``OMP_NUM_THREADS`` is set: the ratio is what is measured, and
multi-threaded BLAS on a shared machine is noise.

    python benchmarks/bench_estimator.py [--batches 25] [--rounds 21]
"""
import os

os.environ.setdefault('OMP_NUM_THREADS', '1')        # before NumPy loads its BLAS
os.environ.setdefault('OPENBLAS_NUM_THREADS', os.environ['OMP_NUM_THREADS'])

import argparse  # noqa: E402
import logging  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402

import numpy as np  # noqa: E402

import xpnet  # noqa: E402
from xpnet import autograd  # noqa: E402
from xpnet import layers as nn  # noqa: E402
from xpnet.data import ArrayDataset, DataLoader  # noqa: E402
from xpnet.estimator import Estimator  # noqa: E402
from xpnet import handlers as H  # noqa: E402

BATCH, SIZES, LR, MOM = 128, (784, 512, 512, 10), 0.05, 0.9


def make_loader(num_batches, seed=0):
    rng = np.random.default_rng(seed)
    n = BATCH * num_batches
    x = rng.standard_normal((n, SIZES[0])).astype(np.float32)
    y = rng.integers(0, SIZES[-1], n).astype(np.float32)
    return DataLoader(ArrayDataset(x, y), batch_size=BATCH)


def build(weights=None):
    net = nn.Sequential()
    net.add(nn.Dense(SIZES[1], activation='relu', in_units=SIZES[0]),
            nn.Dense(SIZES[2], activation='relu', in_units=SIZES[1]),
            nn.Dense(SIZES[3], in_units=SIZES[2]))
    net.initialize(init='xavier')
    if weights is not None:
        for p, w in zip(net.collect_params().values(), weights):
            p.set_data(w)
    trainer = xpnet.Trainer(net.collect_params(), 'sgd', {'learning_rate': LR, 'momentum': MOM})
    return net, trainer


class _Probe(H.BatchEnd):
    """A user handler behind an event filter that never fires during the run."""

    def batch_end(self, estimator, *args, **kwargs):
        raise AssertionError('filtered out')


def idle_handlers(est, out_dir):
    """Every handler beyond the defaults, configured so that it does no work."""
    loss = est.train_metrics[-1]
    return [H.CheckpointHandler(os.path.join(out_dir, 'ckpt'), epoch_period=None),
            H.ReduceLROnPlateauHandler(loss, patience=10 ** 6),
            H.EarlyStoppingHandler(loss, patience=10 ** 6),
            H.LRWarmupHandler(warmup_steps=1),
            H.CSVLoggerHandler(os.path.join(out_dir, 'log.csv')),
            H.GradientUpdateHandler(accumulate=1, clip_global_norm=None),
            H.filtered(_Probe(), H.Events.BATCH_END(once=10 ** 9))]


def run_estimator(loader, weights, num_batches, log_file, idle=False):
    net, trainer = build(weights)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        est = Estimator(net, xpnet.loss.SoftmaxCrossEntropyLoss(), trainer=trainer)
    for h in list(est.logger.handlers):            # log to a file, not to the terminal
        est.logger.removeHandler(h)
    est.logger.addHandler(logging.FileHandler(log_file))
    handlers = idle_handlers(est, os.path.dirname(log_file)) if idle else None
    start = time.perf_counter()
    est.fit(loader, batches=num_batches, event_handlers=handlers)
    elapsed = time.perf_counter() - start
    for h in list(est.logger.handlers):
        h.close()
    return elapsed, net


def run_by_hand(loader, weights, num_batches):
    net, trainer = build(weights)
    loss_fn = xpnet.loss.SoftmaxCrossEntropyLoss()
    start = time.perf_counter()
    done = 0
    while done < num_batches:
        for data, label in loader:
            with autograd.record():
                loss = loss_fn(net(data), label)
            loss.backward()
            trainer.step(data.shape[0])
            done += 1
            if done == num_batches:
                break
    return time.perf_counter() - start, net


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--batches', type=int, default=25)
    parser.add_argument('--rounds', type=int, default=21)
    args = parser.parse_args(argv)

    loader = make_loader(args.batches)
    weights = [p.data().asnumpy() for p in build()[0].collect_params().values()]
    log_file = os.path.join(tempfile.mkdtemp(prefix='bench_estimator_'), 'train.log')

    # same numbers from the loops (the Estimator adds metrics and checks, not math)
    _, a = run_estimator(loader, weights, 3, log_file)
    _, b = run_by_hand(loader, weights, 3)
    _, c = run_estimator(loader, weights, 3, log_file, idle=True)
    for p, q, r in zip(a.collect_params().values(), b.collect_params().values(),
                       c.collect_params().values()):
        np.testing.assert_allclose(p.data().asnumpy(), q.data().asnumpy(), rtol=1e-5,
                                   atol=1e-6)
        np.testing.assert_array_equal(p.data().asnumpy(), r.data().asnumpy())

    # many short rounds, rotating which loop goes first: on a shared machine the load
    # changes by the second, and the loops of a round see about the same load
    times = {'hand': [], 'est': [], 'idle': []}
    runs = [('est', lambda: run_estimator(loader, weights, args.batches, log_file)),
            ('hand', lambda: run_by_hand(loader, weights, args.batches)),
            ('idle', lambda: run_estimator(loader, weights, args.batches, log_file, True))]
    for r in range(args.rounds):
        for name, fn in runs[r % 3:] + runs[:r % 3]:
            times[name].append(fn()[0] / args.batches * 1e3)
    print(f'CPU: {_cpu_model()}')
    print(f'MLP {"-".join(map(str, SIZES))}, batch {BATCH}, {args.batches} batches per run, '
          f'{args.rounds} rounds')
    labels = {'hand': 'hand-written loop', 'est': 'Estimator.fit', 'idle':
              'fit + idle handlers'}
    for name in ('hand', 'est', 'idle'):
        print(f'  {labels[name]:<20}: median {statistics.median(times[name]):7.3f} ms/batch, '
              f'best {min(times[name]):7.3f}')
    for name in ('est', 'idle'):
        ratios = [e / h for e, h in zip(times[name], times['hand'])]
        print(f'  {labels[name]} / hand-written: median of per-round ratios '
              f'{statistics.median(ratios):.3f}, ratio of best times '
              f'{min(times[name]) / min(times["hand"]):.3f} (target <= 1.05)')


def _cpu_model():
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    import platform
    return platform.processor() or 'unknown'


if __name__ == '__main__':
    main()
