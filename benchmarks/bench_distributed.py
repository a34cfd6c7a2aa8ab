"""Data-parallel scaling over MPI: one process with one thread against N ranks, and a cost
model for large jobs.

Models (the same as bench_mlp.py and bench_conv.py's cifar case), SGD with momentum:
  mlp    784-512-512-10, batch 128 per rank;
  cnn    Conv3x3(32)+BN+ReLU, Conv3x3(32)+BN+ReLU, MaxPool2, Conv3x3(64)+BN+ReLU,
         GlobalAvgPool, Dense(10) on 3x32x32, batch 32 per rank.

Weak scaling: every rank trains on its own batch of the size above with
``Trainer(kvstore='dist_sync')``; the baseline is one process, one thread, the same batch,
``Trainer(kvstore='device')``. All is measured in the same MPI job, interleaved: in each
round rank 0 first times the baseline alone (the other ranks wait in a barrier, asleep),
then every rank times local steps at the same time without communicating (what the machine
gives N concurrent processes: the ceiling), then local steps each followed by a blocking
``MPI_Allreduce`` of the gradients' size (what reducing without overlap costs), then
distributed steps.
Efficiency = baseline step time / distributed step time (1.0: N ranks do N times the work
in the same time); the ceiling's ratio shows how much of the loss is the machine (shared
cores, memory bandwidth) rather than the communication. Every process runs one compute
thread (``XPNET_HOST_THREADS=1``, BLAS on one thread).

It also times a blocking allreduce of each model's gradient size (the bandwidth MPI
achieved) and prints a cost model for ring allreduce, ``2 (N-1)/N x bytes / bandwidth +
2 (N-1) x latency``, of which what the backward pass cannot hide stays exposed: the part
longer than the backward pass, and at least the reduction of the last bucket (the one
holding the first layer's gradients, ready only when the pass ends), giving the expected
weak-scaling efficiency at 8, 64 and 512 ranks on 100 Gb/s and 400 Gb/s networks.

    python benchmarks/bench_distributed.py [--ranks 2] [--steps 20] [--rounds 7]

(the script starts ``mpiexec`` itself; ``--worker`` is that job's side.)
"""
import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time

import numpy as np

MODELS = {'mlp': 128, 'cnn': 32}       # name -> batch per rank


def cpu_model():
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or 'unknown CPU'


# ---- the MPI job ------------------------------------------------------------------------------

def build(name, kvstore, seed=0):
    import xpnet
    from xpnet import autograd
    from xpnet import layers as nn
    xpnet.random.seed(seed)
    net = nn.Sequential()
    if name == 'mlp':
        net.add(nn.Dense(512, activation='relu', in_units=784),
                nn.Dense(512, activation='relu', in_units=512), nn.Dense(10, in_units=512))
        shape = (784,)
    else:
        net.add(nn.Conv2D(32, 3, padding=1, in_channels=3), nn.BatchNorm(in_channels=32),
                nn.Activation('relu'),
                nn.Conv2D(32, 3, padding=1, in_channels=32), nn.BatchNorm(in_channels=32),
                nn.Activation('relu'), nn.MaxPool2D(2),
                nn.Conv2D(64, 3, padding=1, in_channels=32), nn.BatchNorm(in_channels=64),
                nn.Activation('relu'), nn.GlobalAvgPool2D(), nn.Dense(10, in_units=64))
        shape = (3, 32, 32)
    net.initialize(init=xpnet.init.Xavier())
    trainer = xpnet.Trainer(net.collect_params(), 'sgd',
                            {'learning_rate': 0.01, 'momentum': 0.9}, kvstore=kvstore)
    batch = MODELS[name]
    rng = np.random.default_rng(seed)
    x = xpnet.array(rng.standard_normal((batch,) + shape).astype(np.float32))
    y = xpnet.array(rng.integers(0, 10, batch).astype(np.float32))
    loss_fn = xpnet.loss.SoftmaxCrossEntropyLoss()
    backward_time = [0.0]

    def step():
        with autograd.record():
            loss = loss_fn(net(x), y)
        t = time.perf_counter()
        loss.backward()
        backward_time[0] += time.perf_counter() - t
        trainer.step(batch)
    step.backward_time = backward_time
    step.trainer = trainer
    step.grad_bytes = sum(p.data().size * 4 for p in net.collect_params().values()
                          if p.grad_req != 'null')
    return step


def timed(step, steps):
    """Wall seconds per step, backward wall seconds per step, CPU seconds per step."""
    step.backward_time[0] = 0.0
    t, c = time.perf_counter(), time.process_time()
    for _ in range(steps):
        step()
    return ((time.perf_counter() - t) / steps, step.backward_time[0] / steps,
            (time.process_time() - c) / steps)


def allreduce_seconds(nbytes, reps=20):
    import xpnet.distributed as dist
    buf = np.ones(nbytes // 4, np.float32)
    comm = dist.communicator()
    comm.allreduce(buf, _cpu())
    times = []
    for _ in range(reps):
        comm.barrier()
        t = time.perf_counter()
        comm.allreduce(buf, _cpu())
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def _cpu():
    import xpnet
    return xpnet.cpu()


def _then_allreduce(step, nbytes):
    """``step`` followed by a blocking MPI_Allreduce of ``nbytes`` (no overlap)."""
    import xpnet.distributed as dist
    buf = np.zeros(nbytes // 4, np.float32)
    comm = dist.communicator()

    def naive():
        step()
        comm.allreduce(buf, _cpu())
    naive.backward_time = step.backward_time
    return naive


def _first_layer_bucket_bytes(trainer):
    """Bytes of the buckets holding the first layer's gradients (ready last)."""
    reducer = trainer._dist
    if reducer is None:
        return 0
    buckets = {id(reducer._slots[id(p._data[0])][0]): reducer._slots[id(p._data[0])][0]
               for name, p in zip(trainer._names, trainer._params)
               if name.startswith('0.') and id(p._data[0]) in reducer._slots}
    return int(sum(b.flat.nbytes for b in buckets.values()))


def worker(args):
    import xpnet.distributed as dist
    dist.init()
    rank = dist.rank()
    result = {}
    for name in args.models:
        single = build(name, 'device')
        multi = build(name, 'dist_sync')
        naive = _then_allreduce(single, multi.grad_bytes)
        timed(single, 3)
        timed(multi, 3)
        rows = []
        for _ in range(args.rounds):
            dist.barrier()
            base = timed(single, args.steps) if rank == 0 else (0.0, 0.0, 0.0)
            dist.barrier()
            alone = max(dist.allgather_object(timed(single, args.steps)[0]))
            dist.barrier()
            serial = max(dist.allgather_object(timed(naive, args.steps)[0]))
            dist.barrier()
            mine = timed(multi, args.steps)
            slowest = max(dist.allgather_object(mine[0]))
            cpu = max(dist.allgather_object(mine[2]))
            rows.append((base[0], base[1], slowest, base[2], cpu, alone, serial))
        reducer = multi.trainer._dist
        result[name] = {'rows': rows, 'grad_bytes': multi.grad_bytes,
                        'last_bucket_bytes': _first_layer_bucket_bytes(multi.trainer),
                        'buckets': len(reducer._buckets) if reducer else 0,
                        'allreduce_s': allreduce_seconds(multi.grad_bytes)}
    if rank == 0:
        print('RESULT ' + json.dumps(result), flush=True)


# ---- the report --------------------------------------------------------------------------------

def ring_seconds(nbytes, n, gbit, latency):
    return 2 * (n - 1) / n * nbytes / (gbit * 1e9 / 8) + 2 * (n - 1) * latency


def report(result, ranks, args):
    print(f'CPU: {cpu_model()} ({os.cpu_count()} logical CPUs), one compute thread per '
          f'process; {ranks} ranks over MPI ({args.rounds} rounds x {args.steps} steps, '
          'medians; spread = min..max over rounds)')
    for name, r in result.items():
        rows = np.array(r['rows'])
        base, bwd, dist_t, base_cpu, dist_cpu, indep, serial = (np.median(rows[:, k])
                                                                for k in range(7))
        ratios = rows[:, 0] / rows[:, 2]
        batch = MODELS[name]
        print(f'\n{name}: batch {batch} per rank, gradients {r["grad_bytes"] / 1e6:.2f} MB')
        print(f'  1 process      {base * 1e3:8.2f} ms/step  {batch / base:9.0f} samples/s '
              f'(backward {bwd * 1e3:.2f} ms)')
        print(f'  {ranks} ranks        {dist_t * 1e3:8.2f} ms/step  '
              f'{ranks * batch / dist_t:9.0f} samples/s')
        print(f'  {ranks} processes, no communication {indep * 1e3:8.2f} ms/step (ceiling '
              f'{base / indep:.1%}; distributed / ceiling {indep / dist_t:.1%})')
        print(f'  {ranks} processes, each step then a blocking allreduce {serial * 1e3:8.2f} '
              f'ms/step ({base / serial:.1%})')
        print(f'  weak-scaling efficiency {base / dist_t:.1%}  (per round '
              f'{ratios.min():.1%}..{ratios.max():.1%}); in CPU time per step '
              f'{base_cpu * 1e3:.2f} ms -> {dist_cpu * 1e3:.2f} ms: {base_cpu / dist_cpu:.1%}')
        seconds = r['allreduce_s']
        bus = 2 * (ranks - 1) / ranks * r['grad_bytes'] / seconds
        print(f'  allreduce of the gradients: {seconds * 1e3:.3f} ms, algorithm bandwidth '
              f'{r["grad_bytes"] / seconds / 1e9:.2f} GB/s, bus bandwidth {bus / 1e9:.2f} GB/s')
        print(f'  model: ring allreduce, {args.latency_us:g} us per hop; {r["buckets"]} buckets, '
              f'{r["last_bucket_bytes"] / 1e6:.2f} MB of them ready only at the end; exposed = '
              'max(allreduce - backward, allreduce of those); efficiency at this step time:')
        for gbit in (100, 400):
            cells = []
            for n in (8, 64, 512):
                lat = args.latency_us * 1e-6
                comm = ring_seconds(r['grad_bytes'], n, gbit, lat)
                exposed = max(comm - bwd, ring_seconds(r['last_bucket_bytes'], n, gbit, lat))
                cells.append(f'{n:3d} ranks {comm * 1e3:6.2f} ms -> {base / (base + exposed):6.1%}')
            print(f'    {gbit:3d} Gb/s: ' + ';  '.join(cells))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--ranks', type=int, default=2)
    ap.add_argument('--steps', type=int, default=20, help='timed steps per round')
    ap.add_argument('--rounds', type=int, default=7, help='interleaved rounds')
    ap.add_argument('--models', nargs='+', default=list(MODELS), choices=list(MODELS))
    ap.add_argument('--latency-us', type=float, default=5.0,
                    help='per-hop latency of the modelled network')
    ap.add_argument('--worker', action='store_true', help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(args)
    local = os.path.join(os.path.dirname(sys.executable), 'mpiexec')
    mpiexec = local if os.path.exists(local) else shutil.which('mpiexec')
    if mpiexec is None:
        sys.exit('bench_distributed: mpiexec not found (pip install "xpnet[mpi]")')
    env = dict(os.environ, XPNET_HOST_THREADS='1', OMP_NUM_THREADS='1',
               OPENBLAS_NUM_THREADS='1', MKL_NUM_THREADS='1')
    cmd = [mpiexec, '-n', str(args.ranks), sys.executable, os.path.abspath(__file__),
           '--worker', '--steps', str(args.steps), '--rounds', str(args.rounds),
           '--models', *args.models]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith('RESULT ')]
    if out.returncode != 0 or not lines:
        sys.exit(f'bench_distributed: the MPI job failed:\n{out.stdout}\n{out.stderr}')
    report(json.loads(lines[0][len('RESULT '):]), args.ranks, args)


if __name__ == '__main__':
    main()
