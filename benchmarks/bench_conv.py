"""Convolution benchmark: xpnet (NumPy) against PyTorch CPU, measured in the same run.

Cases (issue 4):
  lenet   training step of LeNet (Conv 20x5 - ReLU - MaxPool2 - Conv 50x5 - ReLU - MaxPool2 -
          Dense 500 - ReLU - Dense 10) on 1x28x28, batch 64, plain SGD;
  cifar   training step of a CIFAR-style net on 3x32x32, batch 32: Conv3x3(32)+BN+ReLU,
          Conv3x3(32)+BN+ReLU, MaxPool2, Conv3x3(64)+BN+ReLU, GlobalAvgPool, Dense(10);
  deconv  forward + backward of Conv2DTranspose 64->32, kernel 4, stride 2, padding 1, on
          64x16x16, batch 16.

By default both frameworks run in THIS process (as the acceptance suite measures them): each
case is built for both, warmed up, then timed in interleaved rounds (xpnet round, PyTorch
round, ... with the order alternating between rounds) of ``--steps`` steps each. A round's
per-step time is its mean; the report gives the median over rounds and the ratio xpnet /
PyTorch of the medians (below 1: xpnet is faster). Absolute times on a shared machine are
noise; the ratio is what to read.

Rounds are separated by an idle ``--gap`` (0.3 s): after a parallel region, OpenBLAS's
worker threads (NumPy) spin for up to ~0.1 s and GNU OpenMP's (PyTorch) for a while too,
and without the gap that spinning steals a core from whichever framework runs next
(measured: PyTorch's LeNet round 16.5 ms after a PyTorch round, 24 ms right after an
xpnet round). ``--gap 0`` shows that effect.

The first steps after such an idle spell can be slower than the rest, for reasons outside
the framework: on some virtual machines the guest kernel packs a process's threads onto one
virtual CPU after ~0.1 s of idleness and spreads them again only after tens of
milliseconds of load (``docs/performance.md``), which hits xpnet's sleeping pool threads
more than PyTorch's spinning OpenMP ones. ``--settle N`` runs N untimed steps after each
gap, so the rounds time the steady state of a training loop. The report also gives the
page faults per step (the whole process's minor faults during each framework's rounds).

``--separate-processes`` instead runs each framework in its own worker process. That mode
flatters xpnet: while one worker computes, the other's idle OpenMP/OpenBLAS threads spin
and take cores away from it, which slows PyTorch more than NumPy. Use it only to look at
that effect.

    python benchmarks/bench_conv.py                 # all cases, one process
    python benchmarks/bench_conv.py --case cifar --profile     # plus xpnet's time per op
    python benchmarks/bench_conv.py --threads 1     # both frameworks single-threaded

On a machine shared with other busy processes, multi-threaded BLAS/OpenMP pools stall
whenever one of their threads is descheduled; ``--threads 1`` gives steadier ratios there.
``--cpu-time`` reports process CPU time instead of wall time (meaningful with one thread:
it leaves out the time the process waited for a core).
"""
import argparse
import multiprocessing as mp
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _machine import machine_line  # noqa: E402


# ---- xpnet ----------------------------------------------------------------------------------

def make_xp_case(name, rng):
    import xpnet
    from xpnet import autograd, nd, ops
    from xpnet import layers as nn
    xpnet.random.seed(0)
    if name == 'deconv':
        layer = nn.Conv2DTranspose(32, 4, strides=2, padding=1, in_channels=64)
        layer.initialize(init=xpnet.init.Xavier())
        x = nd.array(rng.standard_normal((16, 64, 16, 16)).astype(np.float32))
        x.attach_grad()

        def step():
            with autograd.record():
                out = layer(x)
            out.backward()
        step.model = layer
        return step
    net = nn.HybridSequential()
    if name == 'lenet':
        net.add(nn.Conv2D(20, 5, activation='relu'), nn.MaxPool2D(2),
                nn.Conv2D(50, 5, activation='relu'), nn.MaxPool2D(2),
                nn.Dense(500, activation='relu'), nn.Dense(10))
        shape, batch = (1, 28, 28), 64
    else:
        net.add(nn.Conv2D(32, 3, padding=1), nn.BatchNorm(), nn.Activation('relu'),
                nn.Conv2D(32, 3, padding=1), nn.BatchNorm(), nn.Activation('relu'),
                nn.MaxPool2D(2),
                nn.Conv2D(64, 3, padding=1), nn.BatchNorm(), nn.Activation('relu'),
                nn.GlobalAvgPool2D(), nn.Dense(10))
        shape, batch = (3, 32, 32), 32
    net.initialize(init=xpnet.init.Xavier())
    x = nd.array(rng.standard_normal((batch,) + shape).astype(np.float32))
    y = nd.array(rng.integers(0, 10, batch).astype(np.float32))
    net(x)
    params = [p for p in net.collect_params().values() if p.grad_req != 'null']

    def step(lr=0.01):
        with autograd.record():
            loss = ops.softmax_cross_entropy(net(x), y).mean()
        loss.backward()
        for p in params:
            p.data()._data -= lr * p.grad()._data       # plain SGD, in place
        return loss
    step.model = net
    return step


# ---- PyTorch --------------------------------------------------------------------------------

def make_torch_case(name, rng):
    import torch
    import torch.nn as tnn
    import torch.nn.functional as TF
    torch.manual_seed(0)
    if name == 'deconv':
        layer = tnn.ConvTranspose2d(64, 32, 4, stride=2, padding=1)
        x = torch.tensor(rng.standard_normal((16, 64, 16, 16)).astype(np.float32),
                         requires_grad=True)

        def step():
            out = layer(x)
            out.backward(torch.ones_like(out))
        return step
    if name == 'lenet':
        net = tnn.Sequential(tnn.Conv2d(1, 20, 5), tnn.ReLU(), tnn.MaxPool2d(2),
                             tnn.Conv2d(20, 50, 5), tnn.ReLU(), tnn.MaxPool2d(2),
                             tnn.Flatten(), tnn.Linear(800, 500), tnn.ReLU(),
                             tnn.Linear(500, 10))
        shape, batch = (1, 28, 28), 64
    else:
        net = tnn.Sequential(tnn.Conv2d(3, 32, 3, padding=1), tnn.BatchNorm2d(32), tnn.ReLU(),
                             tnn.Conv2d(32, 32, 3, padding=1), tnn.BatchNorm2d(32), tnn.ReLU(),
                             tnn.MaxPool2d(2),
                             tnn.Conv2d(32, 64, 3, padding=1), tnn.BatchNorm2d(64), tnn.ReLU(),
                             tnn.AdaptiveAvgPool2d(1), tnn.Flatten(), tnn.Linear(64, 10))
        shape, batch = (3, 32, 32), 32
    net.train()
    opt = torch.optim.SGD(net.parameters(), lr=0.01)
    x = torch.tensor(rng.standard_normal((batch,) + shape).astype(np.float32))
    y = torch.tensor(rng.integers(0, 10, batch))

    def step():
        opt.zero_grad()
        loss = TF.cross_entropy(net(x), y)
        loss.backward()
        opt.step()
        return loss
    return step


_XPNET_ONLY = []      # set by --xpnet-only


def torch_available():
    if _XPNET_ONLY:
        return False
    try:
        import importlib.util
        return importlib.util.find_spec('torch') is not None
    except (ImportError, ValueError):
        return False


# ---- timing ---------------------------------------------------------------------------------

def time_round(step, steps, cpu_time=False, faults=None):
    """Mean ms per step over ``steps`` steps; appends the page faults per step (minor
    faults of the whole process) to ``faults`` when given."""
    clock = time.process_time if cpu_time else time.perf_counter
    f0 = _minor_faults()
    t0 = clock()
    for _ in range(steps):
        step()
    elapsed = clock() - t0
    if faults is not None:
        faults.append((_minor_faults() - f0) / steps)
    return elapsed / steps * 1e3


def _minor_faults():
    try:
        import resource
    except ImportError:         # (not on Windows)
        return 0
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def _worker(framework, name, warmup, threads, cpu_time, conn):
    """A framework's own process: build the case, warm up, then time rounds on request."""
    if framework == 'torch':
        import torch
        if threads:
            torch.set_num_threads(threads)
        info = f'torch {torch.__version__}, {torch.get_num_threads()} thread(s)'
        step = make_torch_case(name, np.random.default_rng(0))
    else:
        info = f'numpy {np.__version__}'
        step = make_xp_case(name, np.random.default_rng(0))
    for _ in range(warmup):
        step()
    conn.send(info)
    while True:
        steps = conn.recv()
        if steps is None:
            break
        conn.send(time_round(step, steps, cpu_time))
    conn.close()


def _report(name, times, faults=None):
    med = {k: statistics.median(v) for k, v in times.items()}
    line = f'{name:7s} xpnet {med["xpnet"]:7.2f} ms'
    if 'torch' in med:
        line += (f'   torch {med["torch"]:7.2f} ms   ratio xpnet/torch '
                 f'{med["xpnet"] / med["torch"]:.2f}')
    if faults:
        line += '   page faults/step ' + ', '.join(
            f'{k} {statistics.median(v):.0f}' for k, v in faults.items())
    print(line + '   (per-round ms: ' + ', '.join(
        f'{k}=' + '/'.join(f'{t:.1f}' for t in v) for k, v in times.items()) + ')',
        flush=True)
    return med


def _torch_setup(threads):
    """Import PyTorch once (or return None) and size its thread pool."""
    if not torch_available():
        return None
    import torch
    if threads:
        torch.set_num_threads(threads)
    return torch


def bench_in_process(name, args):
    """Both frameworks in this process, rounds interleaved (the default)."""
    torch = _torch_setup(args.threads)
    infos = {'xpnet': f'numpy {np.__version__}'}
    steps = {'xpnet': make_xp_case(name, np.random.default_rng(0))}
    if torch is not None:
        infos['torch'] = f'torch {torch.__version__}, {torch.get_num_threads()} thread(s)'
        steps['torch'] = make_torch_case(name, np.random.default_rng(0))
    for step in steps.values():
        for _ in range(args.warmup):
            step()
    times = {fw: [] for fw in steps}
    faults = {fw: [] for fw in steps}
    order = list(steps)
    for r in range(args.rounds):
        for fw in (order if r % 2 == 0 else order[::-1]):
            time.sleep(args.gap)
            for _ in range(args.settle):
                steps[fw]()
            times[fw].append(time_round(steps[fw], args.steps, args.cpu_time, faults[fw]))
    return _report(name, times, faults), infos


def bench_separate(name, args):
    """Each framework in its own spawned worker process (``--separate-processes``)."""
    ctx = mp.get_context('spawn')
    frameworks = ['xpnet'] + (['torch'] if torch_available() else [])
    workers = {}
    for fw in frameworks:
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=_worker, args=(fw, name, args.warmup, args.threads,
                                                 args.cpu_time, child), daemon=True)
        proc.start()
        workers[fw] = (proc, parent)
    infos = {fw: conn.recv() for fw, (_, conn) in workers.items()}
    times = {fw: [] for fw in frameworks}
    for _ in range(args.rounds):
        for fw, (_, conn) in workers.items():
            conn.send(args.steps)
            times[fw].append(conn.recv())
    for proc, conn in workers.values():
        conn.send(None)
        proc.join()
    return _report(name, times), infos


def profile(name, steps):
    """Where an xpnet step's time goes: each layer's forward (timed by wrapping the
    layer's ``forward`` -- and ``_forward_act``, through which a Sequential runs a
    BatchNorm and the ReLU after it as one op; hooks would stop that) and each op's
    backward (timed by wrapping the backward rule of every recorded node)."""
    import collections
    from xpnet import autograd as ag
    step = make_xp_case(name, np.random.default_rng(0))
    times = collections.defaultdict(float)
    layers = []

    def collect(block):             # the outermost layers below the containers
        if 'Sequential' not in type(block).__name__:
            layers.append(block)    # (a Conv2D's activation is part of its time)
            return
        for child in block._children.values():
            collect(child)
    collect(step.model)
    def timed_method(layer, attr, key):
        method = getattr(layer, attr)

        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            out = method(*args, **kwargs)
            k = key + ('+' + args[1] if attr == '_forward_act' and args[1] else '')
            times[k] += time.perf_counter() - t0
            return out
        setattr(layer, attr, timed)              # an instance attribute: removed after
    for layer in layers:
        for attr in ('forward', '_forward_act'):
            if hasattr(layer, attr):
                timed_method(layer, attr, 'forward  ' + type(layer).__name__)
    init = ag.Node.__init__

    def timed_init(node, inputs, backward, n_out=1, name=None, *rest):
        def timed(g, _fn=backward, _key='backward ' + str(name)):
            t0 = time.perf_counter()
            out = _fn(g)
            times[_key] += time.perf_counter() - t0
            return out
        init(node, inputs, timed, n_out, name, *rest)
    from xpnet.backend import hostpool
    defer = hostpool.defer

    def timed_defer(fn):            # background jobs (weight gradients): their own time
        def job():
            t0 = time.perf_counter()
            try:
                return fn()
            finally:
                times['background job (not on the critical path)'] += time.perf_counter() - t0
        return defer(job)
    for _ in range(3):
        step()
    ag.Node.__init__ = timed_init
    hostpool.defer = timed_defer
    try:
        times.clear()
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        total = (time.perf_counter() - t0) / steps * 1e3
    finally:
        ag.Node.__init__ = init
        hostpool.defer = defer
        for layer in layers:
            for attr in ('forward', '_forward_act'):
                layer.__dict__.pop(attr, None)
    print(f'\nxpnet {name}: {total:.2f} ms per step; by layer (forward) and op (backward):')
    for key, t in sorted(times.items(), key=lambda kv: -kv[1]):
        if t / steps * 1e3 >= 0.05:
            print(f'  {key:44s} {t / steps * 1e3:7.2f} ms')


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--case', choices=['lenet', 'cifar', 'deconv', 'all'], default='all')
    ap.add_argument('--steps', type=int, default=10)
    ap.add_argument('--rounds', type=int, default=7)
    ap.add_argument('--warmup', type=int, default=3)
    ap.add_argument('--gap', type=float, default=0.3,
                    help='idle seconds before each round, so the previous round\'s spinning '
                         'thread pools go to sleep (in-process mode)')
    ap.add_argument('--settle', type=int, default=0,
                    help='untimed steps after each gap, before the timed ones (in-process '
                         'mode): time the steady state rather than the restart after an idle '
                         'spell (see the docstring)')
    ap.add_argument('--profile', action='store_true',
                    help='also print where an xpnet step spends its time (per layer/op)')
    ap.add_argument('--threads', type=int, default=None,
                    help='threads for BLAS (xpnet) and PyTorch (default: their defaults)')
    ap.add_argument('--cpu-time', action='store_true',
                    help='time process CPU instead of wall clock (use with --threads 1)')
    ap.add_argument('--xpnet-only', action='store_true',
                    help='time xpnet alone (A/B runs of two xpnet versions)')
    ap.add_argument('--separate-processes', action='store_true',
                    help='run each framework in its own worker process (flatters xpnet: '
                         "the other process's idle thread pools spin; see the docstring)")
    args = ap.parse_args(argv)
    if args.xpnet_only:
        _XPNET_ONLY.append(True)
    if args.threads and os.environ.get('OPENBLAS_NUM_THREADS') != str(args.threads):
        # BLAS pools are sized when numpy loads, and numpy is already loaded here: set the
        # variables and start again (spawned workers inherit them too).
        os.environ.update({n: str(args.threads) for n in
                           ('OPENBLAS_NUM_THREADS', 'OMP_NUM_THREADS', 'MKL_NUM_THREADS')})
        os.execv(sys.executable, [sys.executable] + sys.argv)
    cases = ['lenet', 'cifar', 'deconv'] if args.case == 'all' else [args.case]
    print(machine_line(), flush=True)
    bench = bench_separate if args.separate_processes else bench_in_process
    for i, name in enumerate(cases):
        _, infos = bench(name, args)
        if i == 0:
            mode = 'separate processes' if args.separate_processes else 'one process'
            print('  ' + '; '.join(infos.values()) + f'; {mode}; ' +
                  ('CPU time' if args.cpu_time else 'wall time'), flush=True)
    if not torch_available():
        print('(xpnet timed alone: --xpnet-only or PyTorch not importable)')
    if args.profile:
        for name in cases:
            profile(name, args.steps)


if __name__ == '__main__':
    main()
